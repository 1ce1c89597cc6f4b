"""Framing and envelope decoding, tested without sockets."""

from __future__ import annotations

import msgspec
import pytest

from secretd.protocol.errors import MessageTooLarge, ProtocolError
from secretd.protocol.framing import FrameDecoder, encode_frame, is_unframed_start
from secretd.protocol.rpc import Request, Response, decode_message


def test_frame_roundtrip_in_pieces() -> None:
    frames = encode_frame([0, 1, "mask", [None, b"abc"]]) + encode_frame([0, 2, "status", []])
    decoder = FrameDecoder(1024)
    bodies: list[bytes] = []
    for index in range(len(frames)):
        bodies += decoder.feed(bytes(frames[index : index + 1]))
    assert [decode_message(b) for b in bodies] == [Request(1, "mask", [None, b"abc"]), Request(2, "status", [])]
    assert decoder.pending == 0


def test_frame_too_large_rejected_before_body() -> None:
    decoder = FrameDecoder(100)
    with pytest.raises(MessageTooLarge, match="101 bytes exceeds the maximum of 100"):
        decoder.feed((101).to_bytes(4, "big"))


def test_frame_empty_rejected() -> None:
    with pytest.raises(ProtocolError, match="empty frame"):
        FrameDecoder(100).feed(b"\0\0\0\0")


def test_first_byte_tells_framing_apart() -> None:
    assert is_unframed_start(msgspec.msgpack.encode([0, 1, "status", []])[0])
    assert is_unframed_start(msgspec.msgpack.encode([2, "x", []])[0])
    assert not is_unframed_start(encode_frame([0, 1, "status", []])[0])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "invalid msgpack"),
        (msgspec.msgpack.encode({"a": 1}), "must be a non-empty array"),
        (msgspec.msgpack.encode([0, "x", "m", []]), "msgid must be"),
        (msgspec.msgpack.encode([0, 1, 5, []]), "method must be a string"),
        (msgspec.msgpack.encode([0, 1, "m", 7]), "params must be an array"),
        (msgspec.msgpack.encode([9, 1, 2, 3]), "not a msgpack-rpc message"),
        (b"\x91" * 100_000 + b"\xc0", "invalid msgpack"),
    ],
)
def test_decode_rejects_malformed(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_message(body)


def test_decode_response() -> None:
    assert decode_message(msgspec.msgpack.encode([1, 7, None, b"x"])) == Response(7, None, b"x")


@pytest.mark.parametrize("size", [0, 10, 300, 70_000, 1 << 20])
def test_frame_parts_equal_whole_frame(size: int) -> None:
    from secretd.protocol.framing import encode_frame_parts

    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    parts = encode_frame_parts([0, 5, "mask", ["scope", b""]], payload)
    assert b"".join(parts) == bytes(encode_frame([0, 5, "mask", ["scope", payload]]))
    plain = b"".join(encode_frame_parts([1, 5, None, b""], payload, framed=False))
    assert msgspec.msgpack.decode(plain) == [1, 5, None, payload]
