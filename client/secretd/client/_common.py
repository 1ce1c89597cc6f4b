"""Pieces shared by the async and the blocking client: errors, callbacks, result types."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from secretd.protocol.errors import (
    DaemonNotRunning,
    ErrorCode,
    ProtocolError,
    RemoteError,
    TransportError,
    remote_error,
)
from secretd.protocol.rpc import error_value

__all__ = ["SourceCallback", "connect_error", "convert", "raise_remote", "run_callback"]

T = TypeVar("T")

#: A client-held source: called with the secret's name, returns its value (``None``: no value).
SourceCallback = Callable[[str], "str | None"]

_NOT_RUNNING = {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR}


def connect_error(path: Path, exc: OSError) -> TransportError:
    """Map a failed connect() to the error a user can act on."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _NOT_RUNNING:
        return DaemonNotRunning(
            f"secretd is not running: cannot connect to {os.fspath(path)!r} ({reason}). "
            "Start it with 'secretd' (or 'systemctl --user start secretd.socket'), "
            "or point --socket / $SECRETD_SOCKET at the daemon's socket"
        )
    return TransportError(f"cannot connect to secretd at {os.fspath(path)!r}: {reason}")


def raise_remote(error: Any) -> RemoteError:
    """Build the exception for a response's ``error`` field."""
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return remote_error(error["code"], str(error.get("message", "")))
    return RemoteError(int(ErrorCode.INTERNAL_ERROR), f"malformed error from the daemon: {str(error)[:200]}")


def convert(result: Any, type_: type[T]) -> T:
    try:
        return msgspec.convert(result, type_)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"unexpected result from the daemon: {exc}") from None


def run_callback(callbacks: dict[str, SourceCallback], params: list[Any]) -> tuple[Any, Any]:
    """Run a client-held source for a ``source.get`` request: (error, result).

    An exception's message is not sent, because it may quote a value; the
    daemon gets its type only.
    """
    if len(params) != 2 or not all(isinstance(p, str) for p in params):
        return error_value(ErrorCode.INVALID_PARAMS, "source.get takes [handle, name]"), None
    handle, name = params
    callback = callbacks.get(handle)
    if callback is None:
        return error_value(ErrorCode.SECRET_NOT_FOUND, f"no client-held source with handle {handle!r}"), None
    try:
        value = callback(name)
    except Exception as exc:
        return error_value(ErrorCode.CALLBACK_FAILED, f"source raised {type(exc).__name__}"), None
    if value is None:
        return error_value(ErrorCode.CALLBACK_FAILED, "source returned no value"), None
    if not isinstance(value, str):
        return error_value(ErrorCode.CALLBACK_FAILED, f"source returned {type(value).__name__}, not str"), None
    return None, value
