"""The accept loop: listening socket, peer checks, connection limit and graceful shutdown."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
from pathlib import Path

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup

from secretd.protocol.errors import ErrorCode
from secretd.protocol.framing import encode_frame, is_unframed_start
from secretd.protocol.rpc import NOTIFICATION, error_value

from . import logs, systemd
from .config import Config, ConfigError, load_config
from .connection import Connection, Peer
from .errors import RpcError
from .masking import MaskPolicy
from .masking import COMPILED
from .masking.escapes import ACCELERATED
from .paths import prepare_socket_path
from .state import DaemonState
from .store import Scope

__all__ = ["Server"]

# accept() errors that mean "out of a resource right now": pause, then go on accepting.
_RETRY_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.ECONNABORTED}
_PEERCRED = struct.Struct("3i")


def peer_credentials(stream: SocketStream) -> Peer:
    """Read the connecting process's pid, uid and gid (SO_PEERCRED)."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    pid, uid, gid = _PEERCRED.unpack(raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return Peer(pid=pid, uid=uid, gid=gid)


class Server:
    """Runs the daemon on one listening socket until SIGTERM or SIGINT."""

    def __init__(
        self, config: Config, socket_path: Path, config_path: Path | None = None, *, config_required: bool = False
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        #: Read again on SIGHUP and ``reload``; a missing file is an error only if it was named explicitly.
        self.config_path = config_path
        self.config_required = config_required
        #: Names of the global secrets the config file defined, so a reload removes only those.
        self._config_names: set[str] = set()
        self.state: DaemonState
        self.log = logs.get_logger()
        self._connection_count = 0
        self._accepting: anyio.CancelScope
        self._all_closed: anyio.Event

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._accepting = anyio.CancelScope()
        self._all_closed = anyio.Event()
        listener, activated = await self._listen()
        async with anyio.create_task_group() as tg:
            self.state = DaemonState(self.config, self.socket_path, tg, self.config_path)
            self._apply_global_secrets(self.config)
            self.log.info(
                logs.STARTED, socket=str(self.socket_path), pid=os.getpid(), socket_activated=activated,
                instance_id=self.state.instance_id, global_secrets=len(self.config.secrets),
                masker="C module" if ACCELERATED else "pure Python", masker_compiled=COMPILED,
            )
            if not ACCELERATED:
                self.log.warning(
                    "masker.slow_path",
                    hint="the masker's C module is not built, so coloured output masks several times slower; "
                    "install a C compiler and the Python headers, then reinstall secretd (make clean && make run)",
                )
            await tg.start(self._watch_signals)
            systemd.notify(f"READY=1\nSTATUS=accepting connections on {self.socket_path}\nMAINPID={os.getpid()}")
            self.log.info(logs.READY, socket=str(self.socket_path))
            task_status.started()
            async with anyio.create_task_group() as connections:
                with self._accepting:
                    await self._accept_loop(listener, connections)
                await listener.aclose()
                if not activated:
                    self.socket_path.unlink(missing_ok=True)
                await self._drain(connections)
            tg.cancel_scope.cancel()
        self.log.info(logs.STOPPED)

    async def _listen(self) -> tuple[SocketListener, bool]:
        inherited = systemd.inherited_socket()
        if inherited is not None:
            name = inherited.getsockname()
            if isinstance(name, str) and name:
                self.socket_path = Path(name)
            return await SocketListener.from_socket(inherited), True
        prepare_socket_path(self.socket_path)
        listener = await anyio.create_unix_listener(self.socket_path, mode=0o600)
        return listener, False

    async def _accept_loop(self, listener: SocketListener, connections: TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in _RETRY_ACCEPT:
                    self.log.warning(logs.ACCEPT_FAILED, error=os.strerror(exc.errno or 0), retry_in=0.1)
                    await anyio.sleep(0.1)
                    continue
                raise
            connections.start_soon(self._serve_connection, stream)

    async def _serve_connection(self, stream: SocketStream) -> None:
        state = self.state
        self._connection_count += 1
        number = self._connection_count
        try:
            peer = peer_credentials(stream)
        except OSError:
            await stream.aclose()
            return
        if peer.uid != os.getuid() and peer.uid not in state.settings.allowed_uids:
            self.log.warning(logs.PEER_REJECTED, peer_uid=peer.uid, peer_pid=peer.pid, reason="different uid")
            await stream.aclose()
            return
        if len(state.connections) >= state.settings.max_connections:
            self.log.warning(logs.CONNECTION_LIMIT, peer_pid=peer.pid, limit=state.settings.max_connections)
            await self._reject_busy(stream)
            return
        connection = Connection(self, stream, peer, number)
        state.connections.add(connection)
        connection.log.debug(logs.CONNECTION_OPENED)
        try:
            await connection.serve()
        finally:
            state.connections.discard(connection)
            for scope in state.store.close_owned_by(connection, state.settings.orphan_scope_ttl):
                state.maskers.forget(scope)
                connection.log.info(logs.SCOPE_CLOSED, scope=scope.ref, reason="connection closed")
            connection.log.debug(logs.CONNECTION_CLOSED)
            if state.draining and not state.connections:
                self._all_closed.set()

    async def _reject_busy(self, stream: SocketStream) -> None:
        """Respond to the peer's first message with TOO_MANY_CONNECTIONS, then close."""
        message = f"too many connections (maximum {self.state.settings.max_connections}); retry later"
        error = error_value(ErrorCode.TOO_MANY_CONNECTIONS, message)
        try:
            with anyio.fail_after(2):
                first = await stream.receive(1)
                payload = [NOTIFICATION, "error", [error]]
                if is_unframed_start(first[0]):
                    import msgspec

                    await stream.send(msgspec.msgpack.encode(payload))
                else:
                    await stream.send(encode_frame(payload))
        except (TimeoutError, OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        finally:
            await stream.aclose()

    async def _watch_signals(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        await self.reload()
                    except RpcError:
                        pass  # logged by reload(); the running config stays
                    continue
                self.log.info(logs.STOPPING, signal=signal.Signals(signum).name)
                systemd.notify("STOPPING=1")
                self.stop()
                return

    def stop(self) -> None:
        """Stop accepting; idle connections close now, busy ones after their request."""
        self.state.draining = True
        self._accepting.cancel()

    async def _drain(self, connections: TaskGroup) -> None:
        state = self.state
        for connection in list(state.connections):
            if not connection.busy:
                connection.stop()
        if state.connections:
            with anyio.move_on_after(state.settings.shutdown_timeout):
                await self._all_closed.wait()
        connections.cancel_scope.cancel()

    def _apply_global_secrets(self, config: Config) -> None:
        from secretd.protocol.messages import SecretSpec
        from secretd.protocol.sources import StaticSource

        scope: Scope = self.state.store.global_scope
        wanted = {
            name: SecretSpec(name=name, source=entry.source, description=entry.description,
                             inject=entry.inject, programs=entry.programs)
            for name, entry in config.secrets.items()
        }
        for name in [n for n in scope.secrets if n in self._config_names and n not in wanted]:
            scope.remove(name)
        for spec in wanted.values():
            current = scope.secrets.get(spec.name)
            if current is not None and current.spec == spec:
                continue
            secret = scope.put(spec)
            if not isinstance(spec.source, StaticSource):
                scope.unresolved.add(secret)
        self._config_names = set(wanted)

    async def reload(self) -> dict[str, object]:
        """Read the config file again; a bad file keeps the running config."""
        try:
            config = load_config(self.config_path, required=self.config_required)
        except ConfigError as exc:
            self.log.error(logs.RELOAD_FAILED, error=str(exc))
            raise RpcError(ErrorCode.CONFIG_INVALID, f"{exc}; the running config is kept") from None
        if config.daemon != self.config.daemon:
            changed = sorted(
                f for f in config.daemon.__struct_fields__
                if getattr(config.daemon, f) != getattr(self.config.daemon, f)
            )
        else:
            changed = []
        self.config = config
        self.state.config = config
        self.state.resolver.max_stale = config.daemon.max_stale
        self.state.maskers.set_policy(MaskPolicy(placeholder=config.daemon.placeholder.encode()))
        self._apply_global_secrets(config)
        self.log.info(logs.RELOADED, path=str(self.config_path), secrets=len(config.secrets), settings_changed=changed)
        return {"secrets": len(config.secrets), "settings_changed": changed}
