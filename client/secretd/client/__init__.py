"""Client library for secretd: async and blocking clients, terminal integration, secretctl.

Importing this package loads neither the daemon nor its dependencies.
"""

from secretd.protocol.errors import (
    DaemonNotRunning,
    MessageTooLarge,
    NotFoundError,
    ProtocolError,
    RemoteError,
    SecretdError,
    SourceError,
    TransportError,
)
from secretd.protocol.messages import EnvResult, SecretInfo, SecretSpec, StatusResult, UpdateResult
from secretd.protocol.sources import (
    ClientSource,
    CommandSource,
    EnvSource,
    FileSource,
    HttpSource,
    SecretServiceSource,
    StaticSource,
    VaultSource,
)

from .aio import AsyncClient, AsyncMaskStream, PendingCall
from .aterminal import arun_command
from .blocking import Client, MaskStream
from .conversation import Conversation
from .terminal import CommandResult, MaskingUnavailable, run_argv, run_command

__all__ = [
    "AsyncClient",
    "AsyncMaskStream",
    "Client",
    "ClientSource",
    "CommandResult",
    "CommandSource",
    "Conversation",
    "DaemonNotRunning",
    "EnvResult",
    "EnvSource",
    "FileSource",
    "HttpSource",
    "MaskStream",
    "MaskingUnavailable",
    "MessageTooLarge",
    "NotFoundError",
    "PendingCall",
    "ProtocolError",
    "RemoteError",
    "SecretInfo",
    "SecretServiceSource",
    "SecretSpec",
    "SecretdError",
    "SourceError",
    "StaticSource",
    "StatusResult",
    "TransportError",
    "UpdateResult",
    "VaultSource",
    "arun_command",
    "run_argv",
    "run_command",
]
