"""msgpack-rpc envelopes: requests, responses and notifications.

A request is ``[0, msgid, method, params]``, a response
``[1, msgid, error, result]`` and a notification ``[2, method, params]``.
An error is the map ``{"code": int, "message": str}``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from .errors import ErrorCode, ProtocolError

__all__ = [
    "NOTIFICATION",
    "REQUEST",
    "RESPONSE",
    "Notification",
    "Request",
    "Response",
    "decode_message",
    "error_value",
    "parse_message",
]

REQUEST = 0
RESPONSE = 1
NOTIFICATION = 2

_decoder = msgspec.msgpack.Decoder()


class Request(NamedTuple):
    msgid: int
    method: str
    params: list[Any]


class Response(NamedTuple):
    msgid: int
    error: Any
    result: Any


class Notification(NamedTuple):
    method: str
    params: list[Any]


def error_value(code: ErrorCode, message: str) -> dict[str, object]:
    """Build the ``error`` field of a failed response."""
    return {"code": int(code), "message": message}


def decode_message(body: bytes) -> Request | Response | Notification:
    """Decode one msgpack body and check its msgpack-rpc shape."""
    try:
        raw = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"invalid msgpack: {exc}") from exc
    return parse_message(raw)


def parse_message(raw: object) -> Request | Response | Notification:
    """Check an already decoded object's msgpack-rpc shape."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ProtocolError("a msgpack-rpc message must be a non-empty array")
    kind = raw[0]
    if kind == REQUEST and len(raw) == 4:
        _, msgid, method, params = raw
        if not isinstance(msgid, int) or isinstance(msgid, bool) or not 0 <= msgid < 2**32:
            raise ProtocolError("request msgid must be an unsigned 32-bit integer")
        if isinstance(method, bytes):
            method = method.decode("utf-8", "replace")
        if not isinstance(method, str):
            raise ProtocolError("request method must be a string")
        if not isinstance(params, (list, tuple)):
            raise ProtocolError("request params must be an array")
        return Request(msgid, method, list(params))
    if kind == RESPONSE and len(raw) == 4:
        _, msgid, error, result = raw
        if not isinstance(msgid, int):
            raise ProtocolError("response msgid must be an integer")
        return Response(msgid, error, result)
    if kind == NOTIFICATION and len(raw) == 3:
        _, method, params = raw
        if not isinstance(method, (str, bytes)) or not isinstance(params, (list, tuple)):
            raise ProtocolError("notification must be [2, method, params]")
        if isinstance(method, bytes):
            method = method.decode("utf-8", "replace")
        return Notification(method, list(params))
    raise ProtocolError("not a msgpack-rpc message: expected [0, msgid, method, params]")
