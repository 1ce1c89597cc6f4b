"""Errors raised inside the daemon and turned into msgpack-rpc error responses."""

from __future__ import annotations

import re

import msgspec

from secretd.protocol.errors import ErrorCode

__all__ = ["RpcError", "SourceFailed", "safe_validation_message"]

_QUOTED = re.compile(r"'[^']*'")
_UNKNOWN_FIELD = re.compile(r"unknown field `[^`]*`")


def safe_validation_message(exc: msgspec.ValidationError, *, show_field_names: bool = False) -> str:
    """Return msgspec's message without the offending input, which may be a pasted value.

    msgspec quotes invalid enum values (``Invalid enum value 'x'``) and unknown
    field names; the type names and the path (``$[1].source``) stay.  A config
    file's unknown keys may be shown, because a typo there is far likelier than
    a value.
    """
    text = _QUOTED.sub("(not shown)", str(exc))
    if show_field_names:
        return text
    return _UNKNOWN_FIELD.sub("unknown field (not shown)", text)


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
