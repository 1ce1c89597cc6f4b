"""A conversation's scope that survives daemon restarts.

``Conversation`` opens one scope and remembers every secret registered in it.
When the daemon restarts (a new ``instance_id``) or the scope is gone, it
reconnects, opens a new scope, registers the same secrets again in the same
order (so earlier values of a rotated secret stay masked) and retries the call
once.  A mask stream is not carried over: a stream cut by a restart fails, and
the terminal integration withholds that command's output.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from secretd.protocol.errors import ErrorCode, NotFoundError, TransportError
from secretd.protocol.messages import EnvResult, ReferenceMode, SecretInfo, SecretSpec, UpdateResult
from secretd.protocol.sources import ClientSource, Source, StaticSource

from .blocking import Client
from .terminal import CommandResult, OutputCallback, Stdin, run_command

__all__ = ["Conversation"]

T = TypeVar("T")


class Conversation:
    """One agent conversation's secrets, held in a daemon scope."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        label: str = "",
        mode: ReferenceMode | None = None,
        socket_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._owns_client = client is None
        self.client = client if client is not None else Client(socket_path, client_name=label or "conversation")
        # Serialises reconnecting, so that two threads never open two replacement scopes.
        self._lock = threading.RLock()
        self.label = label
        self.mode = mode
        self._history: list[SecretSpec] = []
        self._instance = self.client.instance_id
        self.scope = self.client.open_scope(label, mode=mode)

    def __repr__(self) -> str:
        return f"Conversation(label={self.label!r}, secrets={len(self.names())})"

    def names(self) -> list[str]:
        """Names registered through this object, in registration order."""
        return list(dict.fromkeys(spec.name for spec in self._history))

    def update(
        self,
        secrets: Mapping[str, str | Source | SecretSpec],
        descriptions: Mapping[str, str] | None = None,
    ) -> UpdateResult:
        """Register secrets: plain strings are static values; a ``Source`` or ``SecretSpec`` as given."""
        specs = []
        for name, item in secrets.items():
            if isinstance(item, SecretSpec):
                specs.append(item)
                continue
            source = StaticSource(value=item) if isinstance(item, str) else item
            specs.append(SecretSpec(name=name, source=source, description=(descriptions or {}).get(name, "")))
        result = self._retry(lambda: self.client.update_secrets(self.scope, specs))
        self._history.extend(specs)
        return result

    def register_source(self, handle: str, callback: Callable[[str], str | None], timeout: float = 10.0) -> ClientSource:
        """Serve a client-held source; returns the ``Source`` to register under a name."""
        self.client.register_source(handle, callback)
        return ClientSource(handle=handle, timeout=timeout)

    def remove(self, names: Iterable[str]) -> None:
        names = list(names)
        self._retry(lambda: self.client.remove_secrets(self.scope, names))
        self._history = [spec for spec in self._history if spec.name not in names]

    def resolve_env(self, command: str, *, all: bool = False, exclude: Iterable[str] = ()) -> EnvResult:
        exclude = list(exclude)
        return self._retry(lambda: self.client.resolve_env(self.scope, command, all=all, exclude=exclude))

    def get(self, name: str) -> str:
        return self._retry(lambda: self.client.get_secret(self.scope, name))

    def list(self) -> list[SecretInfo]:
        return self._retry(lambda: self.client.list_secrets(self.scope))

    def mask(self, data: bytes) -> bytes:
        return self._retry(lambda: self.client.mask(self.scope, data))

    def mask_text(self, text: str) -> str:
        return self.mask(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def run(
        self,
        command: str,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        stdin: Stdin = subprocess.DEVNULL,
    ) -> CommandResult:
        """Run a shell command with the secrets it references; output masked, fail closed.

        stdin is ``/dev/null`` by default, because no one types input for an
        agent's command, and a command that read a terminal or the agent's own
        stdin would block.  Pass a file descriptor or file object to give it input.
        """
        self.ensure_scope()
        return run_command(self.client, self.scope, command, cwd=cwd, env=env, timeout=timeout, on_output=on_output,
                           stdin=stdin)

    def close(self) -> None:
        """Close the scope, and the connection too if this object opened it."""
        try:
            self.client.close_scope(self.scope)
        except (TransportError, NotFoundError):
            pass
        if self._owns_client:
            self.client.close()

    def ensure_scope(self) -> None:
        """Reconnect and register again now if the daemon restarted since the last call."""
        self._retry(lambda: self.client.status())

    def _retry(self, operation: Callable[[], T]) -> T:
        with self._lock:
            try:
                return operation()
            except TransportError:
                self._reconnect()
            except NotFoundError as exc:
                if exc.code != ErrorCode.SCOPE_NOT_FOUND:
                    raise
                self._reopen()
            return operation()

    def _reconnect(self) -> None:
        self.client.connect()
        if self.client.instance_id != self._instance:
            self._reopen()

    def _reopen(self) -> None:
        self._instance = self.client.instance_id
        self.scope = self.client.open_scope(self.label, mode=self.mode)
        # Replay in order: a name registered several times leaves its earlier values masked.
        for spec in self._history:
            self.client.update_secrets(self.scope, [spec])
