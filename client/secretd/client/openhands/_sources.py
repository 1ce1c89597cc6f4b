"""Translate the SDK's ``SecretSource`` objects into secretd source specifications."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from openhands.sdk.secret import LookupSecret, SecretSource, SecretValue, StaticSecret
from openhands.sdk.secret import secrets as sdk_secrets
from pydantic import SecretStr

from secretd.protocol.messages import NAME_PATTERN, SecretSpec
from secretd.protocol.sources import HttpSource, StaticSource

from ..conversation import Conversation

__all__ = ["RESERVED_PREFIX", "Translation", "check_name", "to_source", "translate"]

#: Prefix of the names this package registers for masking only; users cannot take it.
RESERVED_PREFIX = "_secretd_"

_NAME = re.compile(NAME_PATTERN)
_MAX_NAME = 256

# LookupSecret.get_value() waits this long for the HTTP response (openhands-sdk 1.58.2).
_LOOKUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Translation:
    """What to register for one SDK source.

    ``spec`` is ``None`` for a ``StaticSecret`` without a value (redacted when
    a state was saved without a cipher): the SDK never exports or masks it, so
    it is not registered with the daemon.  ``handle`` names the client-held
    callback, when there is one.
    """

    spec: SecretSpec | None
    handle: str | None = None


def to_source(value: SecretValue) -> SecretSource:
    """Wrap a plain string as a ``StaticSecret``, as ``SecretRegistry.update_secrets`` does."""
    if isinstance(value, SecretSource):
        return value
    if isinstance(value, str):
        return StaticSecret(value=SecretStr(value))
    raise ValueError(f"invalid secret value of type {type(value).__name__}: expected str or SecretSource")


def check_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can be registered and exported."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > _MAX_NAME:
        raise ValueError(
            f"invalid secret name {name!r}: use a shell identifier "
            "(letters, digits and underscores, not starting with a digit)"
        )
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"invalid secret name {name!r}: the prefix {RESERVED_PREFIX!r} is reserved for secretd")


def translate(
    conversation: Conversation,
    name: str,
    source: SecretSource,
    *,
    lookup_ttl: float,
    callback_timeout: float,
) -> Translation:
    """Build the secretd registration of one SDK source.

    A ``StaticSecret`` travels as its value, a ``LookupSecret`` as an HTTP
    source that the daemon fetches and caches.  Every other source, and a
    ``LookupSecret`` while an in-process resolver is registered with the SDK,
    stays in this process: the daemon calls it back over the connection.
    """
    description = source.description or ""
    if isinstance(source, StaticSecret):
        value = source.get_value()
        if not value:
            return Translation(None)
        return Translation(SecretSpec(name=name, source=StaticSource(value=value), description=description))
    if isinstance(source, LookupSecret) and not _has_local_resolvers():
        http = HttpSource(url=source.url, headers=dict(source.headers), timeout=_LOOKUP_TIMEOUT, ttl=lookup_ttl)
        return Translation(SecretSpec(name=name, source=http, description=description))
    handle = f"openhands-{secrets.token_hex(8)}"
    client_source = conversation.register_source(handle, _callback(source), timeout=callback_timeout)
    return Translation(SecretSpec(name=name, source=client_source, description=description), handle)


def _callback(source: SecretSource):  # type: ignore[no-untyped-def]
    def get_value(_name: str) -> str | None:
        return source.get_value()

    return get_value


def _has_local_resolvers() -> bool:
    # NOTE: reads a private list of openhands-sdk 1.58.2.  A registered resolver
    # resolves LookupSecret URLs in-process (an agent server serving its own
    # URLs), which the daemon cannot reach, so such lookups stay client-held.
    return bool(getattr(sdk_secrets, "_local_secret_resolvers", ()))
