"""Source specifications: where the daemon gets a secret's value from.

Each kind is a tagged struct (``{"kind": "command", "argv": [...]}`` on the
wire).  New kinds are appended to ``Source``; new fields get defaults, so old
clients keep working.
"""

from __future__ import annotations

from typing import Annotated, Union

import msgspec

__all__ = [
    "ClientSource",
    "CommandSource",
    "EnvSource",
    "FileSource",
    "HttpSource",
    "SecretServiceSource",
    "Source",
    "StaticSource",
    "VaultSource",
]

Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]


class _SourceBase(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True, frozen=True):
    """Common base: a source has no fields shared by every kind."""

    def __repr__(self) -> str:
        # The default repr would print every field; StaticSource carries a value.
        return f"{type(self).__name__}(kind={type(self).__struct_config__.tag!r})"


class StaticSource(_SourceBase, tag="static"):
    """A fixed value, sent by the client."""

    value: str


class EnvSource(_SourceBase, tag="env"):
    """An environment variable of the daemon process."""

    var: str


class FileSource(_SourceBase, tag="file"):
    """A file's contents, one trailing newline removed.

    A relative path is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd
    credentials) when the daemon runs with one.
    """

    path: str


class CommandSource(_SourceBase, tag="command"):
    """A command run without a shell; its stdout, one trailing newline removed."""

    argv: Annotated[list[str], msgspec.Meta(min_length=1)]
    timeout: Seconds = 10.0
    ttl: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class HttpSource(_SourceBase, tag="http"):
    """An HTTP GET whose body is the value, as the OpenHands SDK's ``LookupSecret``."""

    url: str
    headers: dict[str, str] = {}
    timeout: Seconds = 30.0
    json_field: str | None = None
    ttl: Annotated[float, msgspec.Meta(ge=0)] = 300.0


class VaultSource(_SourceBase, tag="vault"):
    """A field of a HashiCorp Vault KV version 2 secret."""

    address: str
    path: str
    field: str
    mount: str = "secret"
    token_file: str | None = None
    token_env: str = "VAULT_TOKEN"
    timeout: Seconds = 10.0
    ttl: Annotated[float, msgspec.Meta(ge=0)] = 300.0


class SecretServiceSource(_SourceBase, tag="secret_service"):
    """An item of the freedesktop Secret Service (gnome-keyring, KeePassXC), found by its attributes.

    The daemon talks to the Secret Service on its D-Bus session bus
    (``$DBUS_SESSION_BUS_ADDRESS``); the collection must be unlocked.
    """

    attributes: Annotated[dict[str, str], msgspec.Meta(min_length=1)]
    timeout: Seconds = 10.0
    ttl: Annotated[float, msgspec.Meta(ge=0)] = 300.0


class ClientSource(_SourceBase, tag="client"):
    """A source held by the registering client; the daemon calls it back.

    The daemon sends a ``source.get`` request with ``handle`` over the same
    connection and waits at most ``timeout`` seconds for the value.
    """

    handle: str
    timeout: Seconds = 10.0
    ttl: Annotated[float, msgspec.Meta(ge=0)] = 0.0


Source = Union[
    StaticSource,
    EnvSource,
    FileSource,
    CommandSource,
    HttpSource,
    VaultSource,
    SecretServiceSource,
    ClientSource,
]
