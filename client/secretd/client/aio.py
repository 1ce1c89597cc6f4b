"""Async client on anyio: works under asyncio and trio.

Use it as an async context manager; a reader task takes responses (so
several tasks may have requests in flight at once) and responds to the daemon's
``source.get`` requests for client-held sources.  ``start_call`` sends a request
without waiting for its response, and a mask stream may keep several
``stream.feed`` requests in flight (``open_stream(scope, pipeline=N)``).
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

from secretd.protocol import PROTOCOL_VERSION
from secretd.protocol.errors import ProtocolError, RemoteError, SecretdError, TransportError
from secretd.protocol.framing import FrameDecoder, encode_frame, widen_send_buffer
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

__all__ = ["AsyncClient", "AsyncMaskStream", "PendingCall"]

_MAX_RESPONSE = 1 << 30


class PendingCall:
    """A request sent by ``AsyncClient.start_call``; ``AsyncClient.finish_call`` waits for its response."""

    __slots__ = ("answered", "client", "done", "error", "msgid", "result")

    def __init__(self, client: AsyncClient, msgid: int) -> None:
        self.client = client
        self.msgid = msgid
        self.done = anyio.Event()
        self.answered = False
        self.error: Any = None
        self.result: Any = None


class AsyncClient:
    """An async connection to secretd; create it with ``async with AsyncClient.connect()``."""

    def __init__(self, stream: SocketStream, socket_path: Path, task_group: TaskGroup) -> None:
        self.socket_path = socket_path
        self._stream = stream
        self._socket: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._task_group = task_group
        self._pending: dict[int, PendingCall] = {}
        self._msgid = 0
        self._send_lock = anyio.Lock()
        self._callbacks: dict[str, SourceCallback] = {}
        self._failure: SecretdError | None = None
        self.hello: HelloResult

    def __repr__(self) -> str:
        return f"AsyncClient(socket_path={os.fspath(self.socket_path)!r})"

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, socket_path: str | os.PathLike[str] | None = None, *, client_name: str = "secretd-client"
    ) -> AsyncIterator[AsyncClient]:
        """Connect, run the handshake, and close the connection on leaving the block."""
        path = Path(socket_path) if socket_path is not None else default_socket_path()
        try:
            stream = await anyio.connect_unix(path)
        except OSError as exc:
            raise connect_error(path, exc) from None
        widen_send_buffer(stream.extra(SocketAttribute.raw_socket))
        error: Exception | None = None
        async with stream, anyio.create_task_group() as tg:
            client = cls(stream, path, tg)
            tg.start_soon(client._read)
            try:
                client.hello = convert(await client.call("hello", PROTOCOL_VERSION, client_name), HelloResult)
                yield client
            except Exception as exc:
                # Re-raised below, outside the task group, so that callers get the error
                # itself rather than an ExceptionGroup around it.
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

    @property
    def instance_id(self) -> str:
        return self.hello.instance_id

    def register_source(self, handle: str, callback: SourceCallback) -> None:
        """Serve ``source.get`` for ``handle`` with ``callback(name) -> value``."""
        self._callbacks[handle] = callback

    async def _read(self) -> None:
        decoder = FrameDecoder(_MAX_RESPONSE)
        try:
            while True:
                try:
                    data = await self._stream.receive(1 << 20)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    raise TransportError("secretd closed the connection") from None
                for body in decoder.feed(data):
                    message = decode_message(body)
                    if isinstance(message, Response):
                        pending = self._pending.pop(message.msgid, None)
                        if pending is not None:
                            pending.error, pending.result = message.error, message.result
                            pending.answered = True
                            pending.done.set()
                    elif isinstance(message, Request):
                        self._task_group.start_soon(self._answer, message)
                    elif isinstance(message, Notification) and message.method == "error":
                        error = raise_remote(message.params[0] if message.params else None)
                        raise TransportError(f"secretd closed the connection: {error}")
        except SecretdError as exc:
            if self._failure is None:
                self._failure = exc
            for pending in self._pending.values():
                pending.done.set()
            self._pending.clear()

    async def _answer(self, request: Request) -> None:
        if request.method == "source.get":
            error, result = await anyio.to_thread.run_sync(run_callback, self._callbacks, request.params)
        else:
            error, result = {"code": 3, "message": f"unknown method {request.method!r}"}, None
        await self._send([RESPONSE, request.msgid, error, result])

    async def _send(self, message: list[Any]) -> None:
        frame = memoryview(encode_frame(message))
        async with self._send_lock:
            if self._failure is not None:
                raise TransportError(str(self._failure))
            sent = 0
            try:
                while sent < len(frame):
                    try:
                        sent += self._socket.send(frame[sent:])
                    except BlockingIOError:
                        await anyio.wait_writable(self._socket)
            except BaseException as exc:
                if sent:
                    self._cut_short()
                if isinstance(exc, (OSError, ValueError, anyio.ClosedResourceError)):
                    raise TransportError("connection to secretd lost") from None
                raise

    def _cut_short(self) -> None:
        """Close the connection after a request was only partly sent (its sender was cancelled).

        The daemon would otherwise read the next request's bytes as the rest
        of that one, and masked data as message lengths.
        """
        self._failure = TransportError(
            "a request was cancelled while it was being sent, so the connection was closed; connect again"
        )
        with suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)

    async def call(self, method: str, *params: Any) -> Any:
        """Send one request and return its result; raises ``RemoteError`` on an error response."""
        return await self.finish_call(await self.start_call(method, *params))

    async def start_call(self, method: str, *params: Any) -> PendingCall:
        """Send one request without waiting for its response; ``finish_call`` returns its result.

        A response that no one waits for is dropped when it arrives.
        """
        if self._failure is not None:
            raise TransportError(str(self._failure))
        self._msgid = (self._msgid + 1) % 2**32
        msgid = self._msgid
        pending = self._pending[msgid] = PendingCall(self, msgid)
        try:
            await self._send([REQUEST, msgid, method, list(params)])
        except BaseException:
            self._pending.pop(msgid, None)
            raise
        return pending

    async def finish_call(self, pending: PendingCall) -> Any:
        """Wait for the response to a request sent by ``start_call`` and return its result.

        Raises ``RemoteError`` on an error response and ``TransportError`` when
        the connection closed before the response arrived.
        """
        if pending.client is not self:
            raise ValueError("this call was started on another AsyncClient; finish it there")
        try:
            await pending.done.wait()
        finally:
            self._pending.pop(pending.msgid, None)
        if not pending.answered:
            raise TransportError(str(self._failure or "connection to secretd lost"))
        if pending.error is not None:
            raise raise_remote(pending.error)
        return pending.result

    async def status(self) -> StatusResult:
        return convert(await self.call("status"), StatusResult)

    async def open_scope(
        self, label: str = "", *, ttl: float | None = None, keep: bool = False, mode: ReferenceMode | None = None
    ) -> str:
        return convert(await self.call("scope.open", label, ttl, keep, mode), ScopeOpenResult).scope

    async def close_scope(self, scope: str) -> None:
        await self.call("scope.close", scope)

    async def update_secrets(self, scope: str | None, specs: Iterable[SecretSpec]) -> UpdateResult:
        return convert(await self.call("secrets.update", scope, list(specs)), UpdateResult)

    async def remove_secrets(self, scope: str | None, names: Iterable[str]) -> list[str]:
        return list(await self.call("secrets.remove", scope, list(names)))

    async def list_secrets(self, scope: str | None = None) -> list[SecretInfo]:
        return convert(await self.call("secrets.list", scope), list[SecretInfo])

    async def get_secret(self, scope: str | None, name: str) -> str:
        return convert(await self.call("secrets.get", scope, name), str)

    async def resolve_env(
        self, scope: str | None, command: str, *, all: bool = False, exclude: Iterable[str] = ()
    ) -> EnvResult:
        return convert(await self.call("env.resolve", scope, command, all, list(exclude)), EnvResult)

    async def mask(self, scope: str | None, data: bytes) -> bytes:
        result = await self.call("mask", scope, data)
        if not isinstance(result, bytes):
            raise ProtocolError("mask returned no bytes")
        return result

    async def reload(self) -> dict[str, Any]:
        return dict(await self.call("reload"))

    async def open_stream(self, scope: str | None, *, pipeline: int = 1) -> AsyncMaskStream:
        """Open a mask stream; ``pipeline`` is the maximum number of feeds in flight (see ``AsyncMaskStream``)."""
        _check_pipeline(pipeline)
        return AsyncMaskStream(self, convert(await self.call("stream.open", scope), int), pipeline=pipeline)


class AsyncMaskStream:
    """A daemon-side mask stream: ``feed`` returns what is safe to show, ``close`` the rest.

    To keep several feeds in flight, one task calls ``send`` for each chunk
    and ``end_input`` after the last one.  Another task takes the outputs with
    ``async for output in stream``: each is yielded as soon as its response
    arrives, in the order the chunks were sent, and the loop ends after
    ``end_input`` once every output was yielded.  ``send`` waits while
    ``pipeline`` feeds are in flight.  Joined in order, the outputs are the
    same as those of one ``feed`` per chunk.  ``feed`` and ``drain`` collect
    every output still in flight, so they must not run while another task
    iterates.

    When a feed in flight fails, the error is raised where its output would
    have been yielded, and the outputs of the feeds sent after it are dropped.
    """

    def __init__(self, client: AsyncClient, stream_id: int, *, pipeline: int = 1) -> None:
        _check_pipeline(pipeline)
        self._client = client
        self.id = stream_id
        self.pipeline = pipeline
        self.closed = False
        self._in_flight: deque[PendingCall] = deque()
        self._slots = anyio.Semaphore(pipeline)
        #: Set by ``send`` and ``end_input`` to wake an iteration that waits for a feed.
        self._sent: anyio.Event | None = None
        self._input_ended = False
        #: Whether the daemon's stream was closed: ``closed`` is set before, when ``close`` starts.
        self._released = False

    def __repr__(self) -> str:
        return f"AsyncMaskStream(id={self.id})"

    @property
    def in_flight(self) -> int:
        """Number of feeds whose output has not been returned or yielded yet."""
        return len(self._in_flight)

    async def feed(self, data: bytes) -> bytes:
        """Mask ``data``; return the output of the feeds in flight followed by its own."""
        await self.send(data)
        return await self.drain()

    async def send(self, data: bytes) -> None:
        """Send ``data`` to be masked without waiting for its output, once fewer than ``pipeline`` feeds are in flight."""
        await self._slots.acquire()
        try:
            pending = await self._client.start_call("stream.feed", self.id, data)
        except BaseException:
            self._slots.release()
            raise
        self._in_flight.append(pending)
        self._wake()

    def end_input(self) -> None:
        """Record that ``send`` will not be called again, so that iteration ends after the last output."""
        self._input_ended = True
        self._wake()

    def __aiter__(self) -> AsyncMaskStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._in_flight:
            if self._input_ended:
                raise StopAsyncIteration
            self._sent = anyio.Event()
            await self._sent.wait()
        return await self._collect_oldest()

    async def drain(self) -> bytes:
        """Wait for every feed in flight and return their outputs, in order."""
        pieces = []
        while self._in_flight:
            pieces.append(await self._collect_oldest())
        return b"".join(pieces)

    async def close(self) -> bytes:
        """Return the output of the feeds in flight and the rest of the stream, and close it in the daemon."""
        self.closed = True
        try:
            in_flight_output = await self.drain()
        except RemoteError:
            # Still release the daemon's stream; the feed's error is the one to report.
            with suppress(RemoteError):
                await self._client.call("stream.close", self.id)
            self._released = True
            raise
        tail = _output(await self._client.call("stream.close", self.id), "stream.close")
        self._released = True
        return in_flight_output + tail

    async def discard(self) -> None:
        """Drop the output of the feeds in flight and close the stream in the daemon, ignoring errors.

        For output that will not be shown, such as a failed command's, so that
        the daemon does not keep the stream until the connection closes.
        """
        if self._released:
            return
        self.closed = True
        self._abandon()
        with suppress(SecretdError):
            await self._client.call("stream.close", self.id)
        self._released = True

    async def _collect_oldest(self) -> bytes:
        try:
            result = await self._client.finish_call(self._in_flight[0])
        except BaseException:
            # The outputs of later feeds would follow a gap in the text, so they are dropped too.
            self._abandon()
            raise
        self._in_flight.popleft()
        self._slots.release()
        return _output(result, "stream.feed")

    def _abandon(self) -> None:
        for _ in range(len(self._in_flight)):
            self._slots.release()
        self._in_flight.clear()

    def _wake(self) -> None:
        if self._sent is not None:
            self._sent.set()


def _check_pipeline(pipeline: int) -> None:
    if pipeline < 1:
        raise ValueError(f"pipeline must be at least 1, not {pipeline}")


def _output(result: Any, method: str) -> bytes:
    if not isinstance(result, bytes):
        raise ProtocolError(f"{method} returned no bytes")
    return result
