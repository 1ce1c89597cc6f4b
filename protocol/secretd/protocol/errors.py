"""Stable error codes and the exception tree shared by the daemon and its clients.

::

    SecretdError
    ├── TransportError            the socket failed or the daemon went away
    │   └── DaemonNotRunning      nothing listens on the socket
    ├── ProtocolError             a message could not be framed or decoded
    │   └── MessageTooLarge
    └── RemoteError               the daemon answered a request with an error
        ├── NotFoundError (LookupError)   unknown scope, secret or stream
        └── SourceError           a secret's source failed

A ``RemoteError`` carries the stable ``code`` from ``ErrorCode`` and the
daemon's message.  No message ever contains a secret value.
"""

from __future__ import annotations

import enum

__all__ = [
    "DaemonNotRunning",
    "ErrorCode",
    "MessageTooLarge",
    "NotFoundError",
    "ProtocolError",
    "RemoteError",
    "SecretdError",
    "SourceError",
    "TransportError",
    "remote_error",
]


class ErrorCode(enum.IntEnum):
    """Error codes sent in the ``error`` field of a msgpack-rpc response."""

    PARSE_ERROR = 1
    INVALID_REQUEST = 2
    METHOD_NOT_FOUND = 3
    INVALID_PARAMS = 4
    MESSAGE_TOO_LARGE = 5
    TOO_MANY_CONNECTIONS = 6
    UNSUPPORTED_VERSION = 7
    SCOPE_NOT_FOUND = 10
    SECRET_NOT_FOUND = 11
    STREAM_NOT_FOUND = 12
    LIMIT_EXCEEDED = 13
    SOURCE_FAILED = 14
    INVALID_SECRET = 15
    CONFIG_INVALID = 16
    CALLBACK_FAILED = 17
    INTERNAL_ERROR = 20
    SHUTTING_DOWN = 21


class SecretdError(Exception):
    """Root of every error raised by secretd's client library and protocol code."""


class TransportError(SecretdError):
    """The connection to the daemon failed or was closed."""


class DaemonNotRunning(TransportError):
    """No daemon accepts connections on the socket."""


class ProtocolError(SecretdError):
    """A message could not be framed, encoded or decoded."""


class MessageTooLarge(ProtocolError):
    """A message is larger than the connection's maximum message size."""


class RemoteError(SecretdError):
    """The daemon answered a request with a structured error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = str(self.code)
        return f"{self.message} [{name}]"


class NotFoundError(RemoteError, LookupError):
    """The daemon has no scope, secret or stream of the requested id or name."""


class SourceError(RemoteError):
    """A secret's source failed to produce a value."""


_NOT_FOUND = {ErrorCode.SCOPE_NOT_FOUND, ErrorCode.SECRET_NOT_FOUND, ErrorCode.STREAM_NOT_FOUND}


def remote_error(code: int, message: str) -> RemoteError:
    """Build the most specific ``RemoteError`` subclass for an error code."""
    if code in _NOT_FOUND:
        return NotFoundError(code, message)
    if code == ErrorCode.SOURCE_FAILED:
        return SourceError(code, message)
    return RemoteError(code, message)
