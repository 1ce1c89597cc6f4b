"""Wire format of secretd: messages, error codes, framing and the protocol version.

The protocol is msgpack-rpc over a Unix socket; docs/protocol.md describes
every method.  This package depends on nothing else of secretd.
"""

from .errors import (
    DaemonNotRunning,
    ErrorCode,
    MessageTooLarge,
    NotFoundError,
    ProtocolError,
    RemoteError,
    SecretdError,
    SourceError,
    TransportError,
)
from .paths import default_socket_path

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "VERSION",
    "DaemonNotRunning",
    "ErrorCode",
    "MessageTooLarge",
    "NotFoundError",
    "ProtocolError",
    "RemoteError",
    "SecretdError",
    "SourceError",
    "TransportError",
    "default_socket_path",
]

#: Version of the msgpack-rpc method set; ``hello`` rejects other versions.
PROTOCOL_VERSION = 1

#: Version of the secretd distribution.
VERSION = "0.1.0"

#: Largest message body accepted by default, in bytes (32 MiB).
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024
