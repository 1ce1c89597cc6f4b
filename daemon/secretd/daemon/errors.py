"""Errors raised inside the daemon and turned into msgpack-rpc error responses."""

from __future__ import annotations

from secretd.protocol.errors import ErrorCode

__all__ = ["RpcError", "SourceFailed"]


class RpcError(Exception):
    """A request failed with a stable code and a message safe to send to the peer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SourceFailed(Exception):
    """A source could not produce a value; ``reason`` never contains a value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
