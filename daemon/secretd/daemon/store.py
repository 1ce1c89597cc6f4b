"""Scopes and the secrets they hold.

The global scope holds secrets from the config file and ``secretctl set``;
every conversation scope sees them.  A conversation scope's id is an
unguessable capability (256 random bits); logs and listings use its ``ref``
instead, a short public name that grants nothing.
"""

from __future__ import annotations

import itertools
import secrets as _random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from secretd.protocol.errors import ErrorCode
from secretd.protocol.messages import ReferenceMode, SecretSpec
from secretd.protocol.sources import StaticSource

from .errors import RpcError

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["CacheEntry", "Scope", "Secret", "Store"]

_refs = itertools.count(1)


@dataclass(eq=False)
class CacheEntry:
    """Resolution state of one secret: its value, when it was fetched, its last error."""

    value: str | None = None
    resolved_at: float | None = None  # time.monotonic()
    error: str | None = None
    failed_at: float | None = None
    failures: int = 0

    def __repr__(self) -> str:
        return f"CacheEntry(resolved={self.value is not None}, failures={self.failures})"


@dataclass(eq=False)
class Secret:
    """A registered secret; ``history`` keeps every value it has had, for masking."""

    spec: SecretSpec
    scope: Scope
    cache: CacheEntry = field(default_factory=CacheEntry)
    history: list[str] = field(default_factory=list)
    #: Connection that registered the secret; a client-held source is called back over it.
    origin: Connection | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def source_kind(self) -> str:
        return type(self.spec.source).__struct_config__.tag  # type: ignore[return-value]

    def remember(self, value: str) -> bool:
        """Add ``value`` to the masking history; return whether it was new."""
        if not value or value in self.history:
            return False
        self.history.append(value)
        self.scope.version += 1
        return True

    def __repr__(self) -> str:
        return f"Secret(name={self.name!r}, scope={self.scope.ref!r}, source={self.source_kind!r})"


@dataclass(eq=False)
class Scope:
    """A set of secrets: the global one, or one conversation's."""

    kind: Literal["global", "conversation"]
    id: str
    ref: str
    label: str = ""
    mode: ReferenceMode | None = None
    owner: Connection | None = None
    keep: bool = False
    expires_at: float | None = None
    #: Idle lifetime once the opening connection closed (scopes opened with ``keep``).
    orphan_ttl: float | None = None
    secrets: dict[str, Secret] = field(default_factory=dict)
    #: Values of removed secrets: they stay masked for the life of the scope.
    retired: list[str] = field(default_factory=list)
    #: Bumped whenever the set of values to mask changes.
    version: int = 0
    #: Secrets with a dynamic source that has not produced a value yet.
    unresolved: set[Secret] = field(default_factory=set)

    def values(self) -> Iterator[str]:
        """Yield every value ever resolved in this scope, removed secrets' included."""
        yield from self.retired
        for secret in self.secrets.values():
            yield from secret.history

    def put(self, spec: SecretSpec, origin: Connection | None = None) -> Secret:
        """Register or replace a secret, keeping the earlier values of the name masked."""
        old = self.secrets.get(spec.name)
        secret = Secret(spec=spec, scope=self, origin=origin)
        if old is not None:
            secret.history = old.history
            if old.spec.source == spec.source:
                secret.cache = old.cache
        if old is not None:
            self.unresolved.discard(old)
        self.secrets[spec.name] = secret
        if isinstance(spec.source, StaticSource):
            secret.remember(spec.source.value)
            secret.cache = CacheEntry(value=spec.source.value or None, resolved_at=time.monotonic())
        return secret

    def remove(self, name: str) -> bool:
        secret = self.secrets.pop(name, None)
        if secret is None:
            return False
        self.unresolved.discard(secret)
        self.retired.extend(secret.history)
        return True

    def __repr__(self) -> str:
        return f"Scope(ref={self.ref!r}, kind={self.kind!r}, secrets={len(self.secrets)})"


class Store:
    """All scopes of the daemon, looked up by their capability id."""

    def __init__(self, max_scopes: int) -> None:
        self.max_scopes = max_scopes
        self.global_scope = Scope(kind="global", id="", ref="global")
        self._scopes: dict[str, Scope] = {}

    def __len__(self) -> int:
        return len(self._scopes)

    def conversations(self) -> list[Scope]:
        return list(self._scopes.values())

    def open(
        self,
        *,
        label: str,
        owner: Connection | None,
        keep: bool,
        ttl: float | None,
        mode: ReferenceMode | None,
    ) -> Scope:
        self.expire()
        if len(self._scopes) >= self.max_scopes:
            raise RpcError(
                ErrorCode.LIMIT_EXCEEDED,
                f"too many open scopes (maximum {self.max_scopes}); close unused scopes first",
            )
        scope = Scope(
            kind="conversation",
            id=_random.token_urlsafe(32),
            ref=f"conv-{next(_refs)}",
            label=label[:128],
            mode=mode,
            owner=owner,
            keep=keep,
            expires_at=None if ttl is None else time.monotonic() + ttl,
        )
        self._scopes[scope.id] = scope
        return scope

    def get(self, scope_id: str | None) -> Scope:
        """Return the scope for an id; ``None`` is the global scope."""
        if scope_id is None:
            return self.global_scope
        scope = self._scopes.get(scope_id)
        if scope is not None and scope.expires_at is not None and scope.expires_at <= time.monotonic():
            self.close(scope)
            scope = None
        if scope is not None and scope.orphan_ttl is not None:
            scope.expires_at = time.monotonic() + scope.orphan_ttl
        if scope is None:
            raise RpcError(
                ErrorCode.SCOPE_NOT_FOUND,
                "scope not found: it was closed, expired, or belongs to an earlier daemon instance; open a new scope",
            )
        return scope

    def close(self, scope: Scope) -> None:
        self._scopes.pop(scope.id, None)

    def close_owned_by(self, connection: Connection, orphan_ttl: float) -> list[Scope]:
        """Close the scopes a connection opened without ``keep``; return them.

        Its ``keep`` scopes without a lifetime of their own get an idle lifetime
        of ``orphan_ttl`` seconds, renewed by each use, so that abandoned ones do
        not fill the scope table for good.
        """
        closed = [s for s in self._scopes.values() if s.owner is connection and not s.keep]
        for scope in closed:
            self.close(scope)
        for scope in self._scopes.values():
            if scope.owner is connection:
                scope.owner = None
                if scope.expires_at is None:
                    scope.orphan_ttl = orphan_ttl
                    scope.expires_at = time.monotonic() + orphan_ttl
        return closed

    def expire(self) -> None:
        now = time.monotonic()
        for scope in [s for s in self._scopes.values() if s.expires_at is not None and s.expires_at <= now]:
            self.close(scope)

    def visible(self, scope: Scope) -> dict[str, Secret]:
        """Return the secrets a scope sees: the global ones, shadowed by its own."""
        if scope.kind == "global":
            return dict(scope.secrets)
        return {**self.global_scope.secrets, **scope.secrets}
