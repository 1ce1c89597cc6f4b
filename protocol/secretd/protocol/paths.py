"""Default location of the daemon's socket, shared by the daemon and its clients."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_socket_path", "SOCKET_ENV"]

SOCKET_ENV = "SECRETD_SOCKET"


def default_socket_path(environ: dict[str, str] | None = None) -> Path:
    """Return the socket path used when none is given.

    ``$SECRETD_SOCKET`` wins; otherwise ``$XDG_RUNTIME_DIR/secretd/secretd.sock``;
    otherwise a private directory under /tmp named for the uid, as ssh-agent
    and tmux do when no runtime directory exists.
    """
    env = os.environ if environ is None else environ
    if explicit := env.get(SOCKET_ENV):
        return Path(explicit)
    if runtime := env.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "secretd" / "secretd.sock"
    return Path("/tmp") / f"secretd-{os.getuid()}" / "secretd.sock"
