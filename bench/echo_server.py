"""A length-prefixed echo server on a Unix socket: the ceiling for a masking round trip.

Usage: ``python echo_server.py SOCKET_PATH``. It serves one connection at a
time. Each frame is a 4-byte big-endian body length and the body. The
server reads the whole frame, as secretd must before it can mask, and
sends it back unchanged. It prints ``listening`` once it accepts
connections and runs until it is terminated.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

_HEADER = struct.Struct(">I")

# Frames up to this size go back in one send call; larger ones without a copy.
_SMALL_FRAME = 64 * 1024


def _receive_exactly(connection: socket.socket, buffer: memoryview) -> bool:
    """Fill `buffer` from `connection`; return False if the peer closed first."""
    received = 0
    while received < len(buffer):
        count = connection.recv_into(buffer[received:])
        if count == 0:
            return False
        received += count
    return True


def _serve(connection: socket.socket) -> None:
    buffer = bytearray(1 << 20)
    header = memoryview(bytearray(_HEADER.size))
    while _receive_exactly(connection, header):
        (length,) = _HEADER.unpack(header)
        if length > len(buffer):
            buffer = bytearray(length)
        body = memoryview(buffer)[:length]
        if not _receive_exactly(connection, body):
            return
        if length <= _SMALL_FRAME:
            connection.sendall(b"".join((header, body)))
        else:
            connection.sendall(header)
            connection.sendall(body)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: echo_server.py SOCKET_PATH", file=sys.stderr)
        return 2
    path = argv[0]
    if os.path.exists(path):
        os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(8)
        print("listening", flush=True)
        while True:
            connection, _ = listener.accept()
            with connection:
                _serve(connection)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
