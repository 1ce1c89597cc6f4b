"""Daemon settings and the TOML config file.

The file lives at ``$XDG_CONFIG_HOME/secretd/config.toml`` (or ``--config``)
and is optional: with none, the defaults below apply and the global scope
starts empty.  Example::

    [daemon]
    max_connections = 64
    reference_mode = "word"

    [secrets.GITHUB_TOKEN]
    description = "GitHub token for git push"
    source = { kind = "command", argv = ["pass", "show", "github/token"] }
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import msgspec

from secretd.protocol import DEFAULT_MAX_MESSAGE_SIZE
from secretd.protocol.messages import Inject, Name, ReferenceMode
from secretd.protocol.sources import Source, StaticSource

from .errors import safe_validation_message
from .masking import MAX_VALUE_BYTES

__all__ = ["Config", "ConfigError", "DaemonSettings", "SecretConfig", "default_config_path", "load_config"]

Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]


class DaemonSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Limits and behaviour of the daemon; every field has a default."""

    #: Largest message body accepted, in bytes; checked before the body is read.
    max_message_size: Annotated[int, msgspec.Meta(ge=1024, le=1 << 30)] = DEFAULT_MAX_MESSAGE_SIZE
    #: Connections served at once; further peers get TOO_MANY_CONNECTIONS.
    max_connections: Positive = 128
    #: Conversation scopes open at once.
    max_scopes: Positive = 1024
    #: Secrets in one scope.
    max_secrets_per_scope: Positive = 10_000
    #: Mask streams open at once on one connection.
    max_streams_per_connection: Positive = 64
    #: Seconds a peer may take to finish a message it has started to send.
    idle_timeout: PositiveSeconds = 30.0
    #: Seconds a scope opened with ``keep`` lives unused after its connection closed.
    orphan_scope_ttl: PositiveSeconds = 3600.0
    #: Seconds in-flight requests get to finish after SIGTERM or SIGINT.
    shutdown_timeout: PositiveSeconds = 10.0
    #: How env resolution decides that a command references a secret.
    reference_mode: ReferenceMode = "word"
    #: Text that replaces a masked value.
    placeholder: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] = "<secret-hidden>"
    #: Seconds a source's last good value may still be served while the source fails.
    max_stale: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    #: Microseconds a connection polls its socket for the next request after it responds to a
    #: ``mask`` or ``stream.feed``, instead of sleeping in the event loop.  0 turns polling off.
    busy_poll_us: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 50
    #: Other uids allowed to connect, besides the daemon's own.
    allowed_uids: list[int] = []


class SecretConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A global secret defined in the config file."""

    source: Source
    description: str = ""
    inject: Inject = "referenced"
    programs: list[str] | None = None


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    daemon: DaemonSettings = DaemonSettings()
    secrets: dict[Name, SecretConfig] = {}


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid."""


def default_config_path(environ: dict[str, str] | None = None) -> Path:
    """Return ``$XDG_CONFIG_HOME/secretd/config.toml`` (``~/.config`` by default)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "secretd" / "config.toml"


def load_config(path: Path | None, *, required: bool) -> Config:
    """Read and validate a config file.

    With ``required`` false a missing file gives the defaults.  Errors name
    the file and, for invalid content, the key path with the secret's name
    (``$.secrets.GITHUB_TOKEN.source.argv``) and what is allowed there.
    """
    if path is None:
        return Config()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {str(path)!r} not found") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    try:
        config = msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config file {str(path)!r}: {_describe(exc, data)}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for name, entry in config.secrets.items():
        source = entry.source
        if isinstance(source, StaticSource) and len(source.value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
            raise ConfigError(
                f"invalid config file {str(path)!r}: the value of $.secrets.{name} is longer than "
                f"{MAX_VALUE_BYTES} bytes, the most that can be masked"
            )
    return config


def _describe(exc: msgspec.ValidationError, data: bytes) -> str:
    """Describe an invalid config file with the secret's name and the allowed values, never a value.

    TOML writes keys apart from values, so every key is shown, secret names
    and field names, misspelled ones too.
    """
    raw = msgspec.toml.decode(data)  # parses, because the typed decode got past parsing to validation
    return safe_validation_message(exc, root_type=Config, data=raw, show_keys=True)
