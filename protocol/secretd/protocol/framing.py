"""Length-prefixed framing of msgpack-rpc messages, without I/O.

A frame is a 4-byte big-endian body length followed by the msgpack body.  A
length over the maximum is rejected before any of the body is read.  The
daemon also accepts unframed msgpack-rpc: a frame's first byte is always
below ``0x90``, because lengths stop far below 2**28, while an unframed
msgpack-rpc message starts with a fixarray header (``0x93`` or ``0x94``).
"""

from __future__ import annotations

import mmap
import socket

import msgspec

from .errors import MessageTooLarge, ProtocolError

__all__ = [
    "HEADER_SIZE",
    "LARGE_PAYLOAD",
    "FrameBuffer",
    "FrameDecoder",
    "encode_frame",
    "encode_frame_parts",
    "is_unframed_start",
    "widen_send_buffer",
]

HEADER_SIZE = 4
_encoder = msgspec.msgpack.Encoder()


def encode_frame(message: object) -> bytearray:
    """Encode ``message`` as msgpack behind its length prefix."""
    buffer = bytearray(HEADER_SIZE)
    _encoder.encode_into(message, buffer, HEADER_SIZE)
    buffer[:HEADER_SIZE] = (len(buffer) - HEADER_SIZE).to_bytes(HEADER_SIZE, "big")
    return buffer


#: Send buffer that both ends ask the kernel for. Linux caps it at net.core.wmem_max
#: (208 KiB by default, 4 MiB on the benchmark machine).
SEND_BUFFER = 4 << 20


def widen_send_buffer(sock: socket.socket) -> None:
    """Ask for a send buffer that takes a whole large message at once.

    With the default 208 KiB, 1 MiB of masked output went out in several
    sends, each after a trip through the event loop. On the benchmark
    machine, 4 MiB took 0.05-0.3 ms off a 1 MiB ``mask`` round trip.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass  # a smaller buffer only costs speed


#: Payloads at least this large are sent as a separate buffer instead of being copied in.
LARGE_PAYLOAD = 64 * 1024

_EMPTY_BIN = b"\xc4\x00"


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def encode_frame_parts(head: object, payload: bytes, *, framed: bool = True) -> list[bytes | bytearray]:
    """Encode a message whose last encoded item is ``payload``, without copying the payload.

    ``head`` is the message with ``b""`` in the payload's place, which must be the
    last thing msgpack writes (the last element of the last array).  The result
    is a list of buffers to send in order; for small payloads it is one buffer.
    """
    if len(payload) < LARGE_PAYLOAD:
        return [encode_frame(_replace_last(head, payload)) if framed else _encoder.encode(_replace_last(head, payload))]
    encoded = _encoder.encode(head)
    if not encoded.endswith(_EMPTY_BIN):
        raise ValueError("the payload must be the last item of the message")
    prefix = encoded[: -len(_EMPTY_BIN)] + _bin_header(len(payload))
    if not framed:
        return [prefix, payload]
    size = len(prefix) + len(payload)
    return [size.to_bytes(HEADER_SIZE, "big") + prefix, payload]


def _replace_last(head: object, payload: bytes) -> object:
    assert isinstance(head, list)
    last = head[-1]
    if isinstance(last, list):
        return [*head[:-1], _replace_last(last, payload)]
    return [*head[:-1], payload]


def is_unframed_start(first_byte: int) -> bool:
    """Tell whether a connection's first byte starts plain msgpack-rpc (a fixarray)."""
    return 0x90 <= first_byte <= 0x9F


class FrameDecoder:
    """Split a byte stream into frame bodies, checking each length first.

    Received pieces are kept in a list and joined once per frame, so a large
    frame arriving in many pieces costs one copy, not one per piece.  Bodies
    are returned as memoryviews of that join; decode them before the next feed.
    """

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._pieces: list[bytes | memoryview] = []
        self._size = 0
        self._needed: int | None = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a complete frame."""
        return self._size

    def _header(self) -> bytes:
        header = b""
        for piece in self._pieces:
            header += bytes(piece[: HEADER_SIZE - len(header)])
            if len(header) == HEADER_SIZE:
                break
        return header

    def feed(self, data: bytes) -> list[memoryview]:
        """Add received bytes; return the bodies of the frames now complete.

        Raises ``MessageTooLarge`` as soon as a header announces a body over
        the maximum, before that body arrives.
        """
        if data:
            self._pieces.append(data)
            self._size += len(data)
        bodies: list[memoryview] = []
        while True:
            if self._needed is None:
                if self._size < HEADER_SIZE:
                    return bodies
                size = _body_size(self._header(), self.max_message_size)
                self._needed = size
            end = HEADER_SIZE + self._needed
            if self._size < end:
                return bodies
            joined = memoryview(self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces))
            bodies.append(joined[HEADER_SIZE:end])
            rest = joined[end:]
            self._pieces = [rest] if len(rest) else []
            self._size = len(rest)
            self._needed = None


def _body_size(header: bytes | memoryview, max_message_size: int) -> int:
    """Return the body length a frame header announces; raise for an empty or too large body."""
    size = int.from_bytes(header, "big")
    if size > max_message_size:
        raise MessageTooLarge(
            f"message of {size} bytes exceeds the maximum of {max_message_size} bytes; send smaller chunks"
        )
    if size == 0:
        raise ProtocolError("empty frame: a frame must hold one msgpack message")
    return size


class FrameBuffer:
    """A receive buffer that splits length-prefixed frames in place, for ``recv_into``.

    Receive into ``free()``, then pass the byte count to ``received()``, which
    returns the bodies of the frames now complete as memoryviews into the
    buffer.  Decode them before the next ``free()``, which may move the bytes
    or replace the buffer.  A frame larger than the buffer gets a buffer of
    its own, sized to the frame, so that its body is received in place: the
    kernel's copy is the only one until the body is decoded.  That buffer is
    anonymous memory (``mmap``), whose pages the kernel provides as bytes
    arrive, so a header that announces a large frame costs no memory until
    its body is sent.  It is kept for the next large frame, whose pages are
    then already there, until a small frame arrives.
    """

    def __init__(self, max_message_size: int, size: int = 64 * 1024) -> None:
        self.max_message_size = max_message_size
        self._standard = bytearray(size)
        self._large: mmap.mmap | None = None
        self._buffer: bytearray | mmap.mmap = self._standard
        self._view = memoryview(self._buffer)
        self._start = 0  # first byte not yet returned in a frame
        self._end = 0  # end of the received bytes
        self._frame_size = 0  # header and body of the frame at _start, 0 until its header is complete

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a complete frame."""
        return self._end - self._start

    def free(self) -> memoryview:
        """Return the free space at the end of the buffer, making room for the frame being received."""
        if self._start == self._end:
            self._start = self._end = 0
            if self._buffer is not self._standard:
                self._use(self._standard)
        needed = self._frame_size or HEADER_SIZE
        if self._start + needed > len(self._buffer) or (self._frame_size == 0 and self._start > 0):
            if needed > len(self._buffer):
                if self._large is None or len(self._large) < needed:
                    # Drop the smaller map before making the new one, to keep the peak lower.
                    self._large = None
                    self._large = mmap.mmap(-1, needed)
                self._use(self._large)
            else:
                self._use(self._buffer)
        return self._view[self._end :]

    def _use(self, buffer: bytearray | mmap.mmap) -> None:
        """Move the pending bytes to the start of ``buffer`` and receive into it from now on."""
        pending = self._end - self._start
        # bytes() first: a move within one buffer may overlap.
        buffer[:pending] = bytes(self._view[self._start : self._end])
        if buffer is not self._buffer:
            self._buffer = buffer
            self._view = memoryview(buffer)
        self._start, self._end = 0, pending

    def received(self, count: int) -> list[memoryview]:
        """Account for ``count`` bytes received into ``free()``; return the bodies now complete.

        Raises ``MessageTooLarge`` as soon as a header announces a body over
        the maximum, before that body arrives, and ``ProtocolError`` for an
        empty frame.
        """
        self._end += count
        bodies: list[memoryview] = []
        while True:
            available = self._end - self._start
            if self._frame_size == 0:
                if available < HEADER_SIZE:
                    return bodies
                size = _body_size(self._view[self._start : self._start + HEADER_SIZE], self.max_message_size)
                self._frame_size = HEADER_SIZE + size
                if self._frame_size <= len(self._standard) and self._buffer is not self._large:
                    self._large = None
            if available < self._frame_size:
                return bodies
            end = self._start + self._frame_size
            bodies.append(self._view[self._start + HEADER_SIZE : end])
            self._start = end
            self._frame_size = 0
