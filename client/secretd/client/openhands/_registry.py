"""``SecretdSecretRegistry``: the SDK's ``SecretRegistry`` backed by one secretd conversation scope."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Self

from openhands.sdk.conversation.secret_registry import FAILED_LOOKUP_RETRY_SECONDS, SecretRegistry
from openhands.sdk.secret import SecretValue
from pydantic import PrivateAttr

from secretd.protocol.errors import NotFoundError, SecretdError, SourceError, TransportError
from secretd.protocol.messages import HelloResult, ReferenceMode, SecretSpec
from secretd.protocol.sources import StaticSource

from ..blocking import Client, MaskStream
from ..conversation import Conversation
from ._sources import RESERVED_PREFIX, check_name, to_source, translate
from ._stream import SecretdStreamMask, withheld_notice

if TYPE_CHECKING:
    from openhands.sdk.conversation.secret_registry import StreamOutputMask

__all__ = ["DEFAULT_CALLBACK_TIMEOUT", "DEFAULT_LOOKUP_TTL", "SecretdSecretRegistry"]

logger = logging.getLogger("secretd.client.openhands")

#: Seconds a ``LookupSecret`` value stays cached in the daemon.
DEFAULT_LOOKUP_TTL = 300.0

#: Seconds the daemon waits for a client-held source to return its value.
DEFAULT_CALLBACK_TIMEOUT = 10.0

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")

_TRACKED_PREFIX = f"{RESERVED_PREFIX}tracked_"


class SecretdSecretRegistry(SecretRegistry):
    """A ``SecretRegistry`` whose values live in secretd, not in the agent process.

    Build one with ``connect()`` (or ``use_secretd`` for a conversation).  It
    keeps ``secret_sources`` as the SDK does, so SDK code that reads,
    compares or serializes it still works, and sends every source to one
    daemon scope.  Lookups, injection and masking are daemon calls; when the
    daemon restarts, the next call registers the scope again.  Masking fails
    closed: text that the daemon cannot mask is replaced by a notice.
    """

    _conversation: Conversation | None = PrivateAttr(default=None)
    _owns_client: bool = PrivateAttr(default=False)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)
    _mode: ReferenceMode = PrivateAttr(default="word")
    _lookup_ttl: float = PrivateAttr(default=DEFAULT_LOOKUP_TTL)
    _callback_timeout: float = PrivateAttr(default=DEFAULT_CALLBACK_TIMEOUT)
    # Names registered in the daemon (a StaticSecret without a value is not).
    _registered: set[str] = PrivateAttr(default_factory=set)
    # Client-held handle of each name whose source stays in this process.
    _handles: dict[str, str] = PrivateAttr(default_factory=dict)
    # Client-held names resolved once since they were registered, so the daemon masks their value.
    _seen: set[str] = PrivateAttr(default_factory=set)
    # Masking-only names given to the keys of track_exported_values.
    _tracked: dict[str, str] = PrivateAttr(default_factory=dict)
    # Mask streams dropped without a flush, closed at the next call: (connection, stream id).
    _abandoned: deque[tuple[HelloResult, int]] = PrivateAttr(default_factory=deque)
    # Clock of the back-off for failed client-held sources, in seconds.
    _clock: Callable[[], float] = PrivateAttr(default=time.monotonic)

    @classmethod
    def connect(
        cls,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        client: Client | None = None,
        label: str = "openhands",
        mode: ReferenceMode | None = None,
        lookup_ttl: float = DEFAULT_LOOKUP_TTL,
        callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT,
    ) -> Self:
        """Open a conversation scope in secretd and return an empty registry backed by it.

        ``mode`` chooses how a command references a name (``word``,
        ``shell`` or ``substring``; the daemon's default when ``None``).
        Raises ``DaemonNotRunning`` when nothing listens on the socket.
        """
        conversation = Conversation(client, label=label, mode=mode, socket_path=socket_path)
        registry = cls()
        registry._conversation = conversation
        registry._owns_client = client is None
        registry._lookup_ttl = lookup_ttl
        registry._callback_timeout = callback_timeout
        try:
            registry._mode = mode or conversation.client.status().reference_mode  # type: ignore[assignment]
        except BaseException:
            registry.close()
            raise
        return registry

    @property
    def conversation(self) -> Conversation:
        """The secretd conversation scope behind this registry."""
        if self._conversation is None:
            raise RuntimeError("this registry is not connected to secretd: build it with SecretdSecretRegistry.connect()")
        return self._conversation

    def close(self) -> None:
        """End the daemon scope and, if this registry opened it, the connection."""
        conversation = self._conversation
        if conversation is None:
            return
        with self._lock:
            conversation.close()
            if self._owns_client:
                conversation.client.close()

    # Registration.

    def update_secrets(self, secrets: Mapping[str, SecretValue]) -> None:
        """Add or replace secrets.  A string becomes a ``StaticSecret``, a source is kept as given.

        Raises ``ValueError`` for a name that is not a shell identifier, and
        ``SecretdError`` when the daemon cannot be reached.
        """
        sources = {}
        for name, value in secrets.items():
            check_name(name)
            sources[name] = to_source(value)
        conversation = self.conversation
        with self._lock:
            specs: dict[str, SecretSpec] = {}
            unvalued: list[str] = []
            handles: dict[str, str] = {}
            for name, source in sources.items():
                translation = translate(
                    conversation, name, source, lookup_ttl=self._lookup_ttl, callback_timeout=self._callback_timeout
                )
                if translation.spec is None:
                    unvalued.append(name)
                else:
                    specs[name] = translation.spec
                if translation.handle is not None:
                    handles[name] = translation.handle
            if specs:
                result = conversation.update(specs)
                for name in result.too_short:
                    logger.warning("secret %r is shorter than 4 characters: it is injected but never masked", name)
            stale = [name for name in unvalued if name in self._registered]
            if stale:
                conversation.remove(stale)
            for name in sources:
                old_handle = self._handles.pop(name, None)
                if old_handle is not None:
                    conversation.client.unregister_source(old_handle)
                self._seen.discard(name)
                self._failed_lookups.pop(name, None)
            self._handles.update(handles)
            self._registered.difference_update(unvalued)
            self._registered.update(specs)
            self.secret_sources.update(sources)

    def track_exported_values(self, values: Mapping[str, str]) -> None:
        """Register values for masking only: they are never injected into a command.

        Raises ``SecretdError`` when the daemon cannot be reached, so that a
        caller never believes a value is masked when it is not.
        """
        specs: dict[str, SecretSpec] = {}
        with self._lock:
            for key, value in values.items():
                if not value:
                    continue
                name = self._tracked.setdefault(key, f"{_TRACKED_PREFIX}{len(self._tracked)}")
                specs[name] = SecretSpec(name=name, source=StaticSource(value=value), inject="never")
            if specs:
                self.conversation.update(specs)

    # Lookups.

    def find_secrets_in_text(self, text: str) -> set[str]:
        """Return the registered names that ``text`` references, by the scope's rule.

        ``word`` (and ``shell``, which the daemon refines with a bash parse)
        counts whole identifiers, case-sensitive; ``substring`` is the SDK's
        case-insensitive substring test.
        """
        names = set(self.secret_sources)
        if self._mode == "substring":
            lowered = text.lower()
            return {name for name in names if name.lower() in lowered}
        return set(_IDENTIFIER.findall(text)) & names

    def get_secrets_as_env_vars(self, command: str) -> dict[str, str]:
        """Return the values of the secrets ``command`` references; failed sources are left out."""
        return self._resolve_env(command, all_secrets=False, exclude=())

    def get_all_secrets_as_env_vars(self, exclude: Collection[str] | None = None) -> dict[str, str]:
        """Return the values of every secret visible in the scope but ``exclude``; failed sources are left out."""
        return self._resolve_env("", all_secrets=True, exclude=exclude or ())

    def get_secret_value(self, name: str) -> str | None:
        """Return one value, or ``None`` for an unknown name or a failed source."""
        source = self.secret_sources.get(name)
        if source is not None and name not in self._registered:
            return source.get_value()
        with self._lock:
            try:
                value = self.conversation.get(name)
            except NotFoundError:
                return None
            except SourceError as exc:
                logger.warning("secret %r could not be resolved: %s", name, exc)
                return None
            except SecretdError as exc:
                logger.error("secretd could not look up secret %r: %s", name, exc)
                return None
            self._seen.add(name)
            return value

    def get_secret_infos(self) -> list[dict[str, str | None]]:
        """Return the name and description of every secret for the system prompt.

        The scope's own secrets come first, in registration order, then the
        daemon's global secrets that no conversation secret shadows.
        """
        infos: list[dict[str, str | None]] = [
            {"name": name, "description": source.description} for name, source in self.secret_sources.items()
        ]
        with self._lock:
            try:
                listed = self.conversation.list()
            except SecretdError as exc:
                logger.error("secretd could not list the global secrets: %s", exc)
                return infos
        for info in listed:
            if info.scope == "global" and info.name not in self.secret_sources:
                infos.append({"name": info.name, "description": info.description or None})
        return infos

    # Masking.

    def mask_secrets_in_output(self, text: str) -> str:
        """Return ``text`` with every secret value, and its encodings, replaced.

        Returns a notice in place of the text when the daemon cannot mask it.
        """
        if not text:
            return text
        with self._lock:
            try:
                self._close_abandoned_streams()
                self._resolve_unseen_sources()
                return self.conversation.mask_text(text)
            except SecretdError as exc:
                logger.error("secretd could not mask output, output withheld: %s", exc)
                return withheld_notice(exc)

    def compile_stream_mask(self) -> StreamOutputMask:
        """Return a masker for text that arrives in pieces, backed by a daemon mask stream."""
        return SecretdStreamMask(self)

    # Internals used by SecretdStreamMask.

    def _open_stream(self, owner: SecretdStreamMask) -> tuple[MaskStream, HelloResult, weakref.finalize]:
        """Open a daemon mask stream for ``owner``; return it, its connection and its finalizer."""
        conversation = self.conversation
        with self._lock:
            self._close_abandoned_streams()
            self._resolve_unseen_sources()
            conversation.ensure_scope()
            client = conversation.client
            stream = MaskStream(client, int(client.call("stream.open", conversation.scope)))
            finalizer = weakref.finalize(owner, self._abandoned.append, (client.hello, stream.id))
            return stream, client.hello, finalizer

    def _feed_stream(self, stream: MaskStream, connection: HelloResult, data: bytes) -> bytes:
        with self._lock:
            self._check_connection(connection)
            return stream.feed(data)

    def _close_stream(self, stream: MaskStream, connection: HelloResult) -> bytes:
        with self._lock:
            self._check_connection(connection)
            return stream.close()

    def _check_connection(self, connection: HelloResult) -> None:
        # Stream ids restart on each connection: after a reconnect the same id
        # may name another masker's stream.
        if self.conversation.client.hello is not connection:
            raise TransportError("the mask stream ended when the connection to secretd was replaced")

    def _close_abandoned_streams(self) -> None:
        client = self.conversation.client
        while self._abandoned:
            connection, stream_id = self._abandoned.popleft()
            # Stream ids restart on each connection: close only those of the current one.
            if connection is not client.hello:
                continue
            try:
                client.call("stream.close", stream_id)
            except SecretdError:
                # Best effort: a stream that is gone, or on a broken connection, needs no close.
                pass

    def _resolve_unseen_sources(self) -> None:
        """Resolve each client-held source once, so the daemon has its value before masking.

        The daemon resolves its own dynamic sources before it masks, but
        cannot call back a client-held one outside a request of its client.
        As in the SDK, a source that failed is tried again after 60 seconds.
        """
        now = self._clock()
        for name in list(self._handles):
            if name in self._seen:
                continue
            failed_at = self._failed_lookups.get(name)
            if failed_at is not None and now - failed_at < FAILED_LOOKUP_RETRY_SECONDS:
                continue
            try:
                self.conversation.get(name)
            except (NotFoundError, SourceError):
                self._failed_lookups[name] = now
                continue
            self._failed_lookups.pop(name, None)
            self._seen.add(name)

    def _resolve_env(self, command: str, *, all_secrets: bool, exclude: Collection[str]) -> dict[str, str]:
        with self._lock:
            try:
                result = self.conversation.resolve_env(command, all=all_secrets, exclude=exclude)
            except SecretdError as exc:
                logger.error("secretd could not resolve secrets for a command: %s", exc)
                return {}
            for name, reason in result.errors.items():
                logger.warning("secret %r could not be resolved: %s", name, reason)
            self._seen.update(name for name in result.env if name in self._handles)
        return {name: value for name, value in result.env.items() if value}
