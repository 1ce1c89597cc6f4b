"""Preparation and checks of the directory that holds the daemon's socket."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

__all__ = ["SocketPathError", "prepare_socket_path"]

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class SocketPathError(Exception):
    """The socket path or its directory is unusable or unsafe."""


def prepare_socket_path(path: Path) -> None:
    """Create the socket's directory (mode 0700) and check that it is private.

    Rejects a directory owned by another user or writable by group or others,
    and a path where a live daemon already listens.  A stale socket file left
    by a dead daemon is removed.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketPathError(
            f"socket path {str(path)!r} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --socket"
        )
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SocketPathError(f"cannot create socket directory {str(directory)!r}: {exc.strerror}") from exc
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise SocketPathError(
            f"socket directory {str(directory)!r} is owned by uid {info.st_uid}, not by this user "
            f"(uid {os.getuid()}); use a directory of your own with --socket"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SocketPathError(
            f"socket directory {str(directory)!r} is writable by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run 'chmod 700 {directory}' or choose another --socket"
        )
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketPathError(f"{str(path)!r} exists and is not a socket; remove it or choose another --socket")
        if _is_live(path):
            raise SocketPathError(f"another daemon is already listening on {str(path)!r}")
        path.unlink()


def _is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
