"""Runners for secretd over RPC, secretd's masker in process, and the raw echo round trip.

Each `*_run` function returns a callable without arguments that processes
its whole input once and returns the output, ready for `timing.measure`.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable

from secretd.client import Client
from secretd.client.blocking import DEFAULT_BUSY_POLL_US
from secretd.daemon.masking import Masker, MaskStream

__all__ = [
    "CHUNK_BYTES",
    "PIPELINE_DEPTH",
    "EchoClient",
    "echo_oneshot_run",
    "echo_stream_run",
    "masker_oneshot_run",
    "masker_stream_run",
    "secretd_oneshot_run",
    "secretd_stream_run",
    "split_chunks",
]

CHUNK_BYTES = 8 * 1024
# Feeds in flight for the pipelined stream (`Client.stream(scope, pipeline=...)`), as `run_command` sends them.
PIPELINE_DEPTH = 16

_HEADER = struct.Struct(">I")


def split_chunks(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """Split `data` into pieces of `size` bytes; the last may be shorter."""
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


def secretd_oneshot_run(client: Client, scope: str, data: bytes) -> Callable[[], bytes]:
    """Mask `data` with one ``mask`` request."""
    return lambda: client.mask(scope, data)


def secretd_stream_run(client: Client, scope: str, chunks: list[bytes], pipeline: int = 1) -> Callable[[], bytes]:
    """Open a mask stream, feed it `chunks` one request each, and close it.

    With `pipeline` above 1, up to that many feeds are in flight at once.
    """

    def run() -> bytes:
        pieces = []
        with client.stream(scope, pipeline=pipeline) as stream:
            for chunk in chunks:
                pieces.append(stream.feed(chunk))
            pieces.append(stream.close())
        return b"".join(pieces)

    return run


def masker_oneshot_run(masker: Masker, data: bytes) -> Callable[[], bytes]:
    """Mask `data` with the daemon's masker in this process: the cost without the RPC."""
    return lambda: masker.mask(data)


def masker_stream_run(masker: Masker, chunks: list[bytes]) -> Callable[[], bytes]:
    """Feed `chunks` to an in-process `MaskStream` and flush it."""

    def run() -> bytes:
        stream = MaskStream(masker.policy)
        pieces = [stream.feed(masker, chunk) for chunk in chunks]
        pieces.append(stream.flush(masker))
        return b"".join(pieces)

    return run


class EchoClient:
    """A client of `echo_server.py`: sends length-prefixed frames and reads them back.

    Like `Client` waiting for a chunk's response, it polls for an echoed
    frame for up to `busy_poll_us` microseconds before it blocks.
    """

    def __init__(self, socket_path: str | os.PathLike[str], busy_poll_us: int = DEFAULT_BUSY_POLL_US) -> None:
        if busy_poll_us < 0:
            raise ValueError(f"busy_poll_us must be at least 0 (microseconds), not {busy_poll_us!r}")
        self.busy_poll_us = busy_poll_us
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(os.fspath(socket_path))

    def close(self) -> None:
        self._sock.close()

    def round_trip(self, data: bytes) -> bytearray:
        """Send `data` as one frame and return the echoed body."""
        header = _HEADER.pack(len(data))
        if len(data) <= 64 * 1024:
            self._sock.sendall(header + data)
        else:
            self._sock.sendall(header)
            self._sock.sendall(data)
        echoed_header = self._receive(_HEADER.size, poll=True)
        (length,) = _HEADER.unpack(echoed_header)
        return self._receive(length)

    def _receive(self, length: int, *, poll: bool = False) -> bytearray:
        buffer = bytearray(length)
        view = memoryview(buffer)
        received = 0
        if poll and self.busy_poll_us > 0:
            received = self._poll_into(view)
        while received < length:
            count = self._sock.recv_into(view[received:])
            if count == 0:
                raise ConnectionError("the echo server closed the connection")
            received += count
        return buffer

    def _poll_into(self, view: memoryview) -> int:
        """Poll for up to `busy_poll_us` microseconds and return the number of bytes received, 0 if none."""
        deadline = time.perf_counter() + self.busy_poll_us / 1_000_000
        while True:
            try:
                count = self._sock.recv_into(view, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if time.perf_counter() >= deadline:
                    return 0
                continue
            if count == 0:
                raise ConnectionError("the echo server closed the connection")
            return count


def echo_oneshot_run(client: EchoClient, data: bytes) -> Callable[[], bytearray]:
    """Send `data` to the echo server in one frame and read it back."""
    return lambda: client.round_trip(data)


def echo_stream_run(client: EchoClient, chunks: list[bytes]) -> Callable[[], bytes]:
    """Send `chunks` one frame at a time, reading each back before the next (ping-pong)."""
    return lambda: b"".join([client.round_trip(chunk) for chunk in chunks])
