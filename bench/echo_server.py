"""A length-prefixed echo server on a Unix socket: the ceiling for a masking round trip.

Usage: ``python echo_server.py [--busy-poll-us N] SOCKET_PATH``. It serves
one connection at a time. Each frame is a 4-byte big-endian body length and
the body. The server reads the whole frame, as secretd must before it can
mask, and sends it back unchanged. After sending a frame back, it polls the
socket for up to N microseconds before it blocks for the next frame, as
secretd does after a chunk request (its ``busy_poll_us`` setting). It prints
``listening`` once it accepts connections and runs until it is terminated.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

_HEADER = struct.Struct(">I")

# The default of secretd's busy_poll_us setting (DaemonSettings in secretd.daemon.config), written
# out because this script imports nothing from secretd.
_DEFAULT_BUSY_POLL_US = 50

# Frames up to this size go back in one send call; larger ones without a copy.
_SMALL_FRAME = 64 * 1024


def _poll_into(connection: socket.socket, buffer: memoryview, poll_us: int) -> int | None:
    """Poll `connection` for up to `poll_us` microseconds and return the number of bytes received, or None."""
    deadline = time.perf_counter() + poll_us / 1_000_000
    while True:
        try:
            return connection.recv_into(buffer, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if time.perf_counter() >= deadline:
                return None


def _receive_exactly(connection: socket.socket, buffer: memoryview, poll_us: int = 0) -> bool:
    """Fill `buffer` from `connection`; return False if the peer closed first.

    With `poll_us` above 0, the first receive is a busy poll for that many microseconds.
    """
    received = 0
    if poll_us > 0:
        count = _poll_into(connection, buffer, poll_us)
        if count == 0:
            return False
        received = count or 0
    while received < len(buffer):
        count = connection.recv_into(buffer[received:])
        if count == 0:
            return False
        received += count
    return True


def _serve(connection: socket.socket, busy_poll_us: int) -> None:
    buffer = bytearray(1 << 20)
    header = memoryview(bytearray(_HEADER.size))
    poll_us = 0  # nothing was sent back yet
    while _receive_exactly(connection, header, poll_us):
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
        poll_us = busy_poll_us


def _microseconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer of at least 0")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="echo_server.py", description="Length-prefixed echo server.")
    parser.add_argument("socket_path", metavar="SOCKET_PATH", help="path of the Unix socket to listen on")
    parser.add_argument(
        "--busy-poll-us", type=_microseconds, default=_DEFAULT_BUSY_POLL_US, metavar="N",
        help="microseconds to poll for the next frame after sending one back, 0 for none "
             f"(default: {_DEFAULT_BUSY_POLL_US}, as secretd)",
    )
    args = parser.parse_args(argv)
    path = args.socket_path
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
                _serve(connection, args.busy_poll_us)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
