"""systemd integration: inherited listening sockets and sd_notify readiness."""

from __future__ import annotations

import os
import socket

__all__ = ["SD_LISTEN_FDS_START", "InheritedSocketError", "inherited_socket", "notify"]

SD_LISTEN_FDS_START = 3


class InheritedSocketError(Exception):
    """The socket passed by systemd is not a listening Unix stream socket."""


def inherited_socket(environ: dict[str, str] | None = None) -> socket.socket | None:
    """Return the listening socket passed by systemd, or ``None`` when there is none.

    Follows sd_listen_fds(3): ``LISTEN_PID`` must name this process and
    ``LISTEN_FDS`` counts descriptors from fd 3.  The variables are removed
    so that child processes do not take them for their own.
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    if pid is None or count is None:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit() or int(count) < 1:
        return None
    if int(count) > 1:
        raise InheritedSocketError(f"systemd passed {count} sockets; secretd listens on exactly one")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise InheritedSocketError("the socket passed by systemd is not a Unix stream socket (check ListenStream=)")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise InheritedSocketError("the socket passed by systemd is not listening")
    os.set_inheritable(sock.fileno(), False)
    return sock


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send one sd_notify message (``READY=1``, ``STATUS=…``) if ``NOTIFY_SOCKET`` is set."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True
