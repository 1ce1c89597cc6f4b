"""The request path of mask and stream.feed: in-place framing, several requests per read, pipelined streams."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from secretd.client import Client, FileSource, MaskStream, NotFoundError, RemoteError, SecretSpec, StaticSource, TransportError
from secretd.protocol.errors import ErrorCode, MessageTooLarge, ProtocolError
from secretd.protocol.framing import FrameBuffer, encode_frame

from secretd.daemon import connection

from .conftest import Daemon

VALUE = "Zq81-speedpath-value-Xy77"
PLACEHOLDER = b"<secret-hidden>"


def _receive_into(frames: FrameBuffer, data: bytes) -> list[bytes]:
    """Feed ``data`` through ``frames`` as recv_into would, returning the bodies as bytes."""
    bodies: list[bytes] = []
    view = memoryview(data)
    while view:
        free = frames.free()
        count = min(len(free), len(view))
        free[:count] = view[:count]
        view = view[count:]
        bodies += [bytes(body) for body in frames.received(count)]
    return bodies


# FrameBuffer, without sockets.


def test_frame_buffer_splits_frames_received_bytewise() -> None:
    messages = [[0, 1, "mask", [None, b"abc"]], [0, 2, "status", []]]
    wire = b"".join(bytes(encode_frame(message)) for message in messages)
    frames = FrameBuffer(1024, size=16)
    bodies: list[bytes] = []
    for index in range(len(wire)):
        bodies += _receive_into(frames, wire[index : index + 1])
    assert [msgspec.msgpack.decode(body) for body in bodies] == messages
    assert frames.pending == 0


def test_frame_buffer_receives_large_frame_in_own_buffer() -> None:
    payload = random.Random(1).randbytes(300_000)
    wire = bytes(encode_frame([0, 1, "mask", [None, payload]])) + bytes(encode_frame([0, 2, "status", []]))
    frames = FrameBuffer(1 << 20, size=1024)
    bodies = _receive_into(frames, wire)
    assert [msgspec.msgpack.decode(body) for body in bodies] == [[0, 1, "mask", [None, payload]], [0, 2, "status", []]]
    assert frames.pending == 0
    assert len(frames.free()) == 1024


def test_frame_buffer_rejects_large_length_before_body() -> None:
    frames = FrameBuffer(100)
    frames.free()[:4] = (101).to_bytes(4, "big")
    with pytest.raises(MessageTooLarge, match="101 bytes exceeds the maximum of 100"):
        frames.received(4)


def test_frame_buffer_rejects_empty_frame() -> None:
    frames = FrameBuffer(100)
    frames.free()[:4] = bytes(4)
    with pytest.raises(ProtocolError, match="empty frame"):
        frames.received(4)


# The daemon's request path, over raw sockets.


@pytest.fixture
def raw_socket(daemon: Daemon) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(os.fspath(daemon.socket_path))
    yield sock
    sock.close()


def _read_responses(sock: socket.socket, count: int) -> list[list[object]]:
    frames = FrameBuffer(1 << 26)
    responses: list[list[object]] = []
    while len(responses) < count:
        free = frames.free()
        received = sock.recv_into(free)
        if received == 0:
            raise EOFError("the daemon closed the connection")
        responses += [msgspec.msgpack.decode(body) for body in frames.received(received)]
    return responses


def test_requests_in_one_write_answered_in_order(client: Client, raw_socket: socket.socket) -> None:
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=VALUE))])
    requests = [
        [0, 1, "stream.open", [None]],
        [0, 2, "stream.feed", [1, f"a {VALUE[:7]}".encode()]],
        [0, 3, "mask", [None, f"b {VALUE} c".encode()]],
        [0, 4, "stream.feed", [1, f"{VALUE[7:]} d".encode()]],
        [0, 5, "stream.feed", [99, b"x"]],
        [0, 6, "stream.close", [1]],
    ]
    raw_socket.sendall(b"".join(bytes(encode_frame(request)) for request in requests))
    responses = _read_responses(raw_socket, len(requests))
    assert [response[1] for response in responses] == [1, 2, 3, 4, 5, 6]
    assert responses[2] == [1, 3, None, b"b " + PLACEHOLDER + b" c"]
    assert responses[4][2]["code"] == ErrorCode.STREAM_NOT_FOUND  # type: ignore[index]
    stream_output = responses[1][3] + responses[3][3] + responses[5][3]  # type: ignore[operator]
    assert stream_output == b"a " + PLACEHOLDER + b" d"


def test_large_frame_then_small_in_one_write(raw_socket: socket.socket) -> None:
    payload = random.Random(2).randbytes(3 << 20)
    requests = [[0, 1, "mask", [None, payload]], [0, 2, "mask", [None, b"small"]]]
    wire = b"".join(bytes(encode_frame(request)) for request in requests)
    sender = threading.Thread(target=raw_socket.sendall, args=(wire,))
    sender.start()
    responses = _read_responses(raw_socket, 2)
    sender.join()
    assert responses == [[1, 1, None, payload], [1, 2, None, b"small"]]


def test_chunk_method_errors_unchanged(client: Client) -> None:
    with pytest.raises(NotFoundError) as unknown_scope:
        client.mask("no-such-scope", b"x")
    assert unknown_scope.value.code == ErrorCode.SCOPE_NOT_FOUND
    with pytest.raises(NotFoundError) as unknown_stream:
        client.call("stream.feed", 12345, b"x")
    assert unknown_stream.value.code == ErrorCode.STREAM_NOT_FOUND
    for method, params in [("mask", (None, 7)), ("stream.feed", ("one", b"x")), ("mask", (None,))]:
        with pytest.raises(RemoteError) as invalid:
            client.call(method, *params)
        assert invalid.value.code == ErrorCode.INVALID_PARAMS, (method, params)


def test_chunk_requests_logged_with_scope(daemon: Daemon, client: Client) -> None:
    scope = client.open_scope("logged")
    client.mask(scope, b"debug-level event")
    with pytest.raises(NotFoundError):
        client.mask("no-such-scope", b"x")
    events = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    handled = [event for event in events if event["event"] == "request.handled" and event["method"] == "mask"]
    assert [(event["level"], event["outcome"]) for event in handled] == [("debug", "ok"), ("info", "SCOPE_NOT_FOUND")]
    assert handled[0]["scope"] not in (None, "global", "unknown")
    assert handled[1]["scope"] == "unknown"


def test_mask_resolves_new_dynamic_source_first(client: Client, tmp_short: Path) -> None:
    token_file = tmp_short / "token"
    token_file.write_text(VALUE + "\n")
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="FILE_TOKEN", source=FileSource(path=str(token_file)))])
    assert client.mask(scope, f"cat: {VALUE}".encode()) == b"cat: " + PLACEHOLDER


# Pipelined streams in the blocking client.


def _chunks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks = []
    position = 0
    while position < len(data):
        size = rng.randint(1, 9000)
        chunks.append(data[position : position + size])
        position += size
    return chunks


def _text_with_values(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    pieces = []
    while sum(map(len, pieces)) < size:
        pieces.append(rng.choice([b"plain output line\n", b"\x1b[32mok\x1b[0m ", VALUE.encode(), b" x=" + VALUE.encode() + b"\n"]))
    return b"".join(pieces)


@pytest.mark.parametrize("pipeline", [2, 5, 32])
def test_pipelined_stream_equals_one_shot(client: Client, pipeline: int) -> None:
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=VALUE))])
    scope = client.open_scope()
    data = _text_with_values(pipeline, 200_000)
    expected = client.mask(scope, data)
    assert VALUE.encode() not in expected
    with client.stream(scope, pipeline=pipeline) as stream:
        outputs = [stream.feed(chunk) for chunk in _chunks(data, pipeline)]
        outputs.append(stream.close())
    assert outputs[: pipeline - 1] == [b""] * (pipeline - 1)
    assert b"".join(outputs) == expected


def test_pipelined_stream_drain_returns_all_in_flight(client: Client) -> None:
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=VALUE))])
    with client.stream(None, pipeline=8) as stream:
        first = stream.feed(b"one ")
        second = stream.feed(b"two " + VALUE.encode() + b" ")
        drained = stream.drain()
        assert stream.drain() == b""
        rest = stream.feed(b"three")
        rest += stream.close()
    assert first == second == b""
    assert drained + rest == b"one two " + PLACEHOLDER + b" three"


def test_pipelined_stream_shares_client_with_calls(client: Client) -> None:
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=VALUE))])
    with client.stream(None, pipeline=4) as stream:
        out = stream.feed(b"a " + VALUE.encode()[:5])
        assert client.mask(None, VALUE.encode()) == PLACEHOLDER
        out += stream.feed(VALUE.encode()[5:] + b" b")
        assert client.status().streams == 1
        out += stream.close()
    assert out == b"a " + PLACEHOLDER + b" b"


def test_pipelined_large_chunks_do_not_deadlock(client: Client) -> None:
    data = random.Random(3).randbytes(8 << 20)
    chunks = [data[index : index + (512 << 10)] for index in range(0, len(data), 512 << 10)]
    with client.stream(None, pipeline=16) as stream:
        outputs = [stream.feed(chunk) for chunk in chunks]
        outputs.append(stream.close())
    assert b"".join(outputs) == data


def test_pipelined_feed_error_raised_in_order(client: Client) -> None:
    scope = client.open_scope()
    with client.stream(scope, pipeline=3) as stream:
        assert stream.feed(b"before") == b""
        client.close_scope(scope)
        assert stream.feed(b"after") == b""
        assert stream.feed(b"more") == b"before"
        with pytest.raises(NotFoundError) as error:
            stream.close()
        assert error.value.code == ErrorCode.SCOPE_NOT_FOUND
    assert client.status().streams == 0
    assert client.mask(None, b"still usable") == b"still usable"


def test_pipeline_below_one_rejected(client: Client) -> None:
    with pytest.raises(ValueError, match="pipeline must be at least 1"):
        with client.stream(None, pipeline=0):
            pass


# The blocking client's timeout, enforced by the kernel.


def test_client_timeout_fails_call(tmp_short: Path) -> None:
    path = tmp_short / "silent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.fspath(path))
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            frames = FrameBuffer(1 << 20)
            bodies: list[memoryview] = []
            while not bodies:
                count = connection.recv_into(frames.free())
                bodies = frames.received(count)
            hello = msgspec.msgpack.decode(bodies[0])
            result = {"protocol": 1, "daemon_version": "0", "instance_id": "i", "max_message_size": 1 << 20, "pid": 1}
            connection.sendall(encode_frame([1, hello[1], None, result]))
            connection.recv(65536)  # the next request, which gets no response
            connection.recv(65536)  # returns once the client gives up

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        client = Client(path, timeout=0.3)
        with pytest.raises(TransportError, match="timed out"):
            client.mask(None, b"never answered")
        client.close()
    finally:
        server.join(5)
        listener.close()


def test_daemon_serves_after_pipelined_client_leaves(daemon: Daemon) -> None:
    with daemon.client() as leaving:
        stream = MaskStream(leaving, leaving.call("stream.open", None), pipeline=8)
        for _ in range(6):
            stream.feed(b"x" * 5000)
    with daemon.client() as staying:
        assert staying.mask(None, b"still here") == b"still here"


def test_frame_buffer_reuses_large_buffer_until_small_frame() -> None:
    frames = FrameBuffer(1 << 24, size=64)
    body = b"\x91" + b"x" * 1000
    frame = len(body).to_bytes(4, "big") + body
    assert _receive_into(frames, frame) == [body]
    large = frames._large
    assert large is not None
    assert _receive_into(frames, frame) == [body]
    assert frames._large is large
    assert _receive_into(frames, b"\x00\x00\x00\x01\xc0") == [b"\xc0"]
    assert frames._large is None


def test_feeds_in_one_write_masked_together(client: Client, daemon: Daemon, raw_socket: socket.socket) -> None:
    # Feeds that arrive in one read are masked with one scan; each still gets its own response.
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=VALUE))])
    client.mask(None, b"builds the masker")  # until then feeds take the path that builds it
    raw_socket.sendall(bytes(encode_frame([0, 1, "stream.open", [None]])))
    assert _read_responses(raw_socket, 1)[0][3] == 1
    pieces = [b"a ", VALUE[:5].encode(), VALUE[5:12].encode(), VALUE[12:].encode() + b" b", b" c"]
    requests = [[0, 10 + index, "stream.feed", [1, piece]] for index, piece in enumerate(pieces)]
    raw_socket.sendall(b"".join(bytes(encode_frame(request)) for request in requests))
    responses = _read_responses(raw_socket, len(requests))
    assert [response[1] for response in responses] == [10, 11, 12, 13, 14]
    assert all(response[2] is None for response in responses)
    raw_socket.sendall(bytes(encode_frame([0, 20, "stream.close", [1]])))
    tail = _read_responses(raw_socket, 1)[0][3]
    assert b"".join(response[3] for response in responses) + tail == b"a " + PLACEHOLDER + b" b c"  # type: ignore[operator]
    # The placeholder goes with the feed its match starts in.
    assert responses[1][3] == PLACEHOLDER
    assert responses[2][3] == b""


def test_framed_read_fits_full_batch_of_feeds() -> None:
    # run_command keeps 16 feeds of 8 KiB in flight, and one read must be able to carry them all.
    decoder = connection._FramedDecoder(64 << 20)
    feed = bytes(encode_frame([0, 1, "stream.feed", [1, b"x" * 8192]]))
    receive = decoder.free()
    assert len(receive) >= connection._MAX_BATCH * len(feed)
    receive[: 16 * len(feed)] = feed * 16
    assert len(decoder.received(16 * len(feed))) == 16


def test_feeds_in_one_write_keep_their_errors(client: Client, raw_socket: socket.socket) -> None:
    # A batch with a bad feed is handled request by request, as if they had come apart.
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=VALUE))])
    raw_socket.sendall(b"".join(bytes(encode_frame([0, msgid, "stream.open", [None]])) for msgid in (1, 2)))
    assert [response[3] for response in _read_responses(raw_socket, 2)] == [1, 2]
    requests = [
        [0, 10, "stream.feed", [1, f"x {VALUE}".encode()]],
        [0, 11, "stream.feed", [99, b"y"]],
        [0, 12, "stream.feed", [2, f"{VALUE} z ".encode()]],
        [0, 13, "stream.feed", [1, b" w "]],
        [0, 14, "stream.feed", [1, "not bytes"]],
    ]
    raw_socket.sendall(b"".join(bytes(encode_frame(request)) for request in requests))
    responses = _read_responses(raw_socket, len(requests))
    assert [response[1] for response in responses] == [10, 11, 12, 13, 14]
    assert responses[1][2]["code"] == ErrorCode.STREAM_NOT_FOUND  # type: ignore[index]
    assert responses[0][3] + responses[3][3] == b"x " + PLACEHOLDER + b" w "  # type: ignore[operator]
    assert responses[2][3] == PLACEHOLDER + b" z "
