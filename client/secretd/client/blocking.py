"""Blocking client for synchronous tool code.

One socket, one request at a time (a lock serialises threads).  While it
waits for a response it also answers the daemon's ``source.get`` requests,
so client-held sources work without a background thread.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from secretd.protocol import PROTOCOL_VERSION
from secretd.protocol.errors import ProtocolError, TransportError
from secretd.protocol.framing import HEADER_SIZE, encode_frame, encode_frame_parts
from secretd.protocol.messages import (
    EnvResult,
    HelloResult,
    ReferenceMode,
    ScopeOpenResult,
    SecretInfo,
    SecretSpec,
    StatusResult,
    UpdateResult,
)
from secretd.protocol.paths import default_socket_path
from secretd.protocol.rpc import REQUEST, RESPONSE, Notification, Request, Response, decode_message

from ._common import SourceCallback, connect_error, convert, raise_remote, run_callback

__all__ = ["Client", "MaskStream"]

# Responses may carry up to the daemon's maximum message size; a little more for the envelope.
_MAX_RESPONSE = 1 << 30


class Client:
    """A blocking connection to secretd.

    ``Client()`` connects to the default socket and performs the version
    handshake; ``instance_id`` then names the daemon process, so a caller can
    tell a reconnect to a new daemon from one to the same.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = 60.0,
        client_name: str = "secretd-client",
    ) -> None:
        self.socket_path = Path(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self.client_name = client_name
        self._lock = threading.RLock()
        self._callbacks: dict[str, SourceCallback] = {}
        self._sock: socket.socket | None = None
        self._msgid = 0
        self.hello: HelloResult
        self.connect()

    def __repr__(self) -> str:
        return f"Client(socket_path={os.fspath(self.socket_path)!r}, connected={self._sock is not None})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def instance_id(self) -> str:
        return self.hello.instance_id

    def connect(self) -> HelloResult:
        """Open the socket (closing any earlier one) and run the handshake."""
        with self._lock:
            self.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(os.fspath(self.socket_path))
            except OSError as exc:
                sock.close()
                raise connect_error(self.socket_path, exc) from None
            self._sock = sock
            self.hello = convert(self.call("hello", PROTOCOL_VERSION, self.client_name), HelloResult)
            return self.hello

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    # Client-held sources.

    def register_source(self, handle: str, callback: SourceCallback) -> None:
        """Serve ``source.get`` for ``handle`` with ``callback(name) -> value``."""
        self._callbacks[handle] = callback

    def unregister_source(self, handle: str) -> None:
        self._callbacks.pop(handle, None)

    # The raw call.

    def call(self, method: str, *params: Any) -> Any:
        """Send one request and return its result; raises ``RemoteError`` on an error response."""
        with self._lock:
            sock = self._sock
            if sock is None:
                raise TransportError("the client is closed; call connect() first")
            self._msgid = (self._msgid + 1) % 2**32
            msgid = self._msgid
            try:
                if params and isinstance(params[-1], bytes):
                    # Output to mask goes out as its own buffer, not copied into the frame.
                    head = [REQUEST, msgid, method, [*params[:-1], b""]]
                    for part in encode_frame_parts(head, params[-1]):
                        sock.sendall(part)
                else:
                    sock.sendall(encode_frame([REQUEST, msgid, method, list(params)]))
                return self._wait(sock, msgid)
            except (OSError, TransportError) as exc:
                self.close()
                if isinstance(exc, TransportError):
                    raise
                raise TransportError(f"connection to secretd lost during {method!r}: {exc.strerror or exc}") from None

    def _read_frame(self, sock: socket.socket) -> bytearray:
        """Read one frame with exact reads, so a large body is received in place."""
        header = self._read_exactly(sock, HEADER_SIZE)
        size = int.from_bytes(header, "big")
        if size == 0 or size > _MAX_RESPONSE:
            raise ProtocolError(f"invalid frame length {size} from secretd")
        return self._read_exactly(sock, size)

    @staticmethod
    def _read_exactly(sock: socket.socket, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        received = 0
        while received < size:
            count = sock.recv_into(view[received:])
            if count == 0:
                raise TransportError("secretd closed the connection")
            received += count
        return buffer

    def _wait(self, sock: socket.socket, msgid: int) -> Any:
        while True:
            message = decode_message(self._read_frame(sock))
            if isinstance(message, Response):
                if message.msgid != msgid:
                    continue
                if message.error is not None:
                    raise raise_remote(message.error)
                return message.result
            if isinstance(message, Request):
                self._answer(sock, message)
            elif isinstance(message, Notification) and message.method == "error":
                error = raise_remote(message.params[0] if message.params else None)
                raise TransportError(f"secretd closed the connection: {error}")

    def _answer(self, sock: socket.socket, request: Request) -> None:
        if request.method == "source.get":
            error, result = run_callback(self._callbacks, request.params)
        else:
            error, result = {"code": 3, "message": f"unknown method {request.method!r}"}, None
        sock.sendall(encode_frame([RESPONSE, request.msgid, error, result]))

    # Methods.

    def status(self) -> StatusResult:
        return convert(self.call("status"), StatusResult)

    def open_scope(
        self, label: str = "", *, ttl: float | None = None, keep: bool = False, mode: ReferenceMode | None = None
    ) -> str:
        """Open a conversation scope; return its id, a capability to keep private."""
        return convert(self.call("scope.open", label, ttl, keep, mode), ScopeOpenResult).scope

    def close_scope(self, scope: str) -> None:
        self.call("scope.close", scope)

    def update_secrets(self, scope: str | None, specs: Iterable[SecretSpec]) -> UpdateResult:
        return convert(self.call("secrets.update", scope, list(specs)), UpdateResult)

    def remove_secrets(self, scope: str | None, names: Iterable[str]) -> list[str]:
        return list(self.call("secrets.remove", scope, list(names)))

    def list_secrets(self, scope: str | None = None) -> list[SecretInfo]:
        return convert(self.call("secrets.list", scope), list[SecretInfo])

    def get_secret(self, scope: str | None, name: str) -> str:
        """Return one value: an explicit reveal, logged by the daemon."""
        return convert(self.call("secrets.get", scope, name), str)

    def resolve_env(
        self, scope: str | None, command: str, *, all: bool = False, exclude: Iterable[str] = ()
    ) -> EnvResult:
        """Return the environment for ``command``: the values of the secrets it references."""
        return convert(self.call("env.resolve", scope, command, all, list(exclude)), EnvResult)

    def mask(self, scope: str | None, data: bytes) -> bytes:
        result = self.call("mask", scope, data)
        if not isinstance(result, bytes):
            raise ProtocolError("mask returned no bytes")
        return result

    def reload(self) -> dict[str, Any]:
        return dict(self.call("reload"))

    @contextmanager
    def stream(self, scope: str | None) -> Iterator[MaskStream]:
        """Open a mask stream; on leaving the block without error it is closed (flushed)."""
        stream = MaskStream(self, convert(self.call("stream.open", scope), int))
        yield stream
        if not stream.closed:
            stream.close()


class MaskStream:
    """A daemon-side mask stream: ``feed`` returns what is safe to show, ``close`` the rest."""

    def __init__(self, client: Client, stream_id: int) -> None:
        self._client = client
        self.id = stream_id
        self.closed = False

    def __repr__(self) -> str:
        return f"MaskStream(id={self.id})"

    def feed(self, data: bytes) -> bytes:
        result = self._client.call("stream.feed", self.id, data)
        if not isinstance(result, bytes):
            raise ProtocolError("stream.feed returned no bytes")
        return result

    def close(self) -> bytes:
        self.closed = True
        result = self._client.call("stream.close", self.id)
        if not isinstance(result, bytes):
            raise ProtocolError("stream.close returned no bytes")
        return result


