"""Parameters and results of every method, as msgspec structs.

Parameters travel positionally (msgpack-rpc ``params`` is an array), so each
``*Params`` struct is ``array_like``: trailing fields have defaults and may be
left out, which is how the protocol grows without breaking old clients.
Results are maps.  A ``scope`` of ``None`` means the global scope.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .sources import Source

__all__ = [
    "METHODS",
    "EnvParams",
    "EnvResult",
    "GetParams",
    "HelloParams",
    "HelloResult",
    "ListParams",
    "MaskParams",
    "RemoveParams",
    "ReferenceMode",
    "ScopeCloseParams",
    "ScopeOpenParams",
    "ScopeOpenResult",
    "SecretInfo",
    "SecretSpec",
    "SourceGetParams",
    "StatusResult",
    "StreamCloseParams",
    "StreamFeedParams",
    "StreamOpenParams",
    "UpdateParams",
    "UpdateResult",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, max_length=256)]
ScopeId = Annotated[str, msgspec.Meta(max_length=128)] | None
ReferenceMode = Literal["word", "shell", "substring"]
Inject = Literal["referenced", "always", "never"]


class _Params(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Positional parameters of a request."""


class HelloParams(_Params):
    protocol: int
    client: str = ""


class HelloResult(msgspec.Struct):
    protocol: int
    daemon_version: str
    instance_id: str
    max_message_size: int
    pid: int


class SecretSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A secret to register: a name, its source and how it is injected."""

    name: Name
    source: Source
    description: str = ""
    inject: Inject = "referenced"
    programs: list[str] | None = None

    def __repr__(self) -> str:
        return f"SecretSpec(name={self.name!r}, source={self.source!r})"


class ScopeOpenParams(_Params):
    label: str = ""
    ttl: Annotated[float, msgspec.Meta(gt=0)] | None = None
    keep: bool = False
    mode: ReferenceMode | None = None


class ScopeOpenResult(msgspec.Struct):
    scope: str
    expires_in: float | None = None


class ScopeCloseParams(_Params):
    scope: str


class UpdateParams(_Params):
    scope: ScopeId
    secrets: list[SecretSpec]


class UpdateResult(msgspec.Struct):
    updated: list[str]
    too_short: list[str]


class RemoveParams(_Params):
    scope: ScopeId
    names: list[str]


class ListParams(_Params):
    scope: ScopeId = None


class SecretInfo(msgspec.Struct, omit_defaults=True):
    name: str
    description: str
    source: str
    scope: Literal["global", "conversation"]
    state: Literal["unresolved", "fresh", "stale", "failed"]
    inject: str = "referenced"
    age: float | None = None
    last_error: str | None = None
    too_short: bool = False
    values_masked: int = 0


class GetParams(_Params):
    scope: ScopeId
    name: str


class EnvParams(_Params):
    scope: ScopeId
    command: str
    all: bool = False
    exclude: list[str] = []


class EnvResult(msgspec.Struct):
    env: dict[str, str]
    errors: dict[str, str]
    #: Referenced secrets that a policy kept out (``inject = "never"``, ``programs``), with the reason.
    denied: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"EnvResult(names={sorted(self.env)!r}, errors={self.errors!r}, denied={self.denied!r})"


#: Output to mask: msgpack ``bin`` (bytes) or ``str``.  msgspec cannot express a
#: bytes-or-str union, so the handler checks the type.
Data = Any


class MaskParams(_Params):
    scope: ScopeId
    data: Data


class StreamOpenParams(_Params):
    scope: ScopeId = None


class StreamFeedParams(_Params):
    stream: int
    data: Data


class StreamCloseParams(_Params):
    stream: int


class SourceGetParams(_Params):
    """Sent by the daemon to a client that registered a ``ClientSource``."""

    handle: str
    name: str


class StatusResult(msgspec.Struct):
    daemon_version: str
    protocol: int
    instance_id: str
    pid: int
    uptime: float
    socket: str
    scopes: int
    secrets: int
    global_secrets: int
    connections: int
    streams: int
    too_short: list[str]
    placeholder: str
    reference_mode: str
    #: Whether the masker uses its C module; without it, masking coloured output is several times slower.
    masker_accelerated: bool = False
    #: Whether the masker's Python modules run compiled by mypyc, which streams chunk by chunk faster.
    masker_compiled: bool = False


#: Every method the daemon serves, with its parameter struct (``None``: no parameters).
METHODS: dict[str, type[_Params] | None] = {
    "hello": HelloParams,
    "status": None,
    "scope.open": ScopeOpenParams,
    "scope.close": ScopeCloseParams,
    "secrets.update": UpdateParams,
    "secrets.remove": RemoveParams,
    "secrets.list": ListParams,
    "secrets.get": GetParams,
    "env.resolve": EnvParams,
    "mask": MaskParams,
    "stream.open": StreamOpenParams,
    "stream.feed": StreamFeedParams,
    "stream.close": StreamCloseParams,
    "reload": None,
}
