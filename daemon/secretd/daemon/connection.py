"""One client connection: framing detection, request dispatch and calls back to the client.

A reader task decodes messages and hands requests to one worker, which
handles them in order (so the chunks of a stream stay in order).  Responses
to the daemon's own requests (``source.get`` for client-held sources) are
taken by the reader directly, so a handler can wait for one while the worker
is busy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import msgpack
import msgspec
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from secretd.protocol.errors import ErrorCode, MessageTooLarge, ProtocolError
from secretd.protocol.framing import (
    LARGE_PAYLOAD,
    FrameBuffer,
    encode_frame,
    encode_frame_parts,
    is_unframed_start,
    widen_send_buffer,
)
from secretd.protocol.messages import METHODS
from secretd.protocol.rpc import (
    NOTIFICATION,
    REQUEST,
    RESPONSE,
    Notification,
    Request,
    Response,
    decode_message,
    error_value,
    parse_message,
)

from . import logs
from .api import CHUNK_HANDLERS, HANDLERS, NOT_READY, stream_feed_many_now
from .errors import RpcError, SourceFailed, safe_validation_message

if TYPE_CHECKING:
    from .server import Server
    from .store import Scope

__all__ = ["Connection", "Peer"]

#: Methods called once per chunk of output.
_CHUNK_METHODS = frozenset({"mask", "stream.feed"})

#: Methods answered by the reader task itself, saving a hand-off per request.  They
#: never wait for a call back to a client, which only the reader could receive; the
#: others (``env.resolve``, ``secrets.get``) go to the worker task.
_INLINE_METHODS = frozenset({
    "hello", "status", "mask", "stream.open", "stream.feed", "stream.close", "scope.open", "scope.close",
    "secrets.update", "secrets.remove", "secrets.list",
})

#: Receive buffer of a plain msgpack-rpc connection; a framed one sizes its buffer to large frames.
_RECEIVE_SIZE = 64 * 1024
#: Most ``stream.feed`` requests masked with one scan: a bound on how long the first waits for its response.
_MAX_BATCH = 16
#: Receive buffer of a framed connection: room for a full batch of 8 KiB feeds in one read.
#: With 64 KiB, reads carried at most 7 of them, and 16 in flight ran 20% slower.
_FRAMED_RECEIVE_SIZE = 256 * 1024
# Lengths stop at 1 GiB (the largest max_message_size), so a frame's first byte is at most 0x40.
_MAX_FRAME_FIRST_BYTE = (1 << 30) >> 24
_encoder = msgspec.msgpack.Encoder()


def _is_feed(message: Request | Response | Notification) -> bool:
    return isinstance(message, Request) and message.method == "stream.feed"


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass(eq=False)
class _Call:
    done: anyio.Event = field(default_factory=anyio.Event)
    error: Any = None
    result: Any = None


class _UnframedDecoder:
    """Plain msgpack-rpc: consecutive msgpack arrays with no length prefix."""

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._unpacker = msgpack.Unpacker(max_buffer_size=max_message_size, raw=False, strict_map_key=False)
        self._fed = 0
        self._buffer = memoryview(bytearray(_RECEIVE_SIZE))

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return self._fed - self._unpacker.tell()

    def free(self) -> memoryview:
        """Return the buffer to receive into; ``received`` copies what arrived into the unpacker."""
        return self._buffer

    def received(self, count: int) -> list[Request | Response | Notification]:
        try:
            self._unpacker.feed(self._buffer[:count])
            self._fed += count
        except msgpack.BufferFull:
            raise MessageTooLarge(
                f"message exceeds the maximum of {self.max_message_size} bytes; send smaller chunks"
            ) from None
        messages = []
        try:
            for raw in self._unpacker:
                messages.append(parse_message(raw))
        except Exception as exc:
            # msgpack raises ValueError subclasses for bad bytes, but also TypeError for
            # a map key it cannot hash and RecursionError for deep nesting: all are garbage.
            raise ProtocolError(f"invalid msgpack: {type(exc).__name__}") from None
        return messages


class _FramedDecoder:
    def __init__(self, max_message_size: int) -> None:
        self._frames = FrameBuffer(max_message_size, _FRAMED_RECEIVE_SIZE)

    @property
    def pending(self) -> int:
        return self._frames.pending

    def free(self) -> memoryview:
        return self._frames.free()

    def received(self, count: int) -> list[Request | Response | Notification]:
        # Every body is decoded before the next free(), which may reuse its bytes.
        return [decode_message(body) for body in self._frames.received(count)]


class _Closed(Exception):
    """The peer closed the connection or it failed; the reader ends quietly."""


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _ReadReadiness:
    """Read readiness of a socket, registered with the asyncio loop once and kept between waits.

    ``anyio.wait_readable`` registers the socket and removes it again on every
    call, which costs epoll_ctl system calls under uvloop.  Here the
    registration stays while requests come and go, and is dropped only
    when the socket turns readable while no one waits, so that a busy reader
    is not woken on every loop iteration.  Call ``close`` before the socket
    is closed.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._waiter: asyncio.Future[None] | None = None
        self._registered = False

    async def wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        if not self._registered:
            self._loop.add_reader(self._fd, self._on_readable)
            self._registered = True
        try:
            await waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self._loop.remove_reader(self._fd)
            self._registered = False
        elif not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self._registered:
            self._loop.remove_reader(self._fd)
            self._registered = False


class Connection:
    """Serves one peer until it disconnects, misbehaves or the daemon stops."""

    def __init__(self, server: Server, stream: SocketStream, peer: Peer, number: int) -> None:
        self.server = server
        self.state = server.state
        self.stream = stream
        self.peer = peer
        self.number = number
        self.client_name = ""
        self.framed: bool | None = None
        self.closed = False
        self._in_flight = 0
        self.streams: dict[int, tuple[Scope, Any]] = {}
        self.next_stream = 0
        self.log = logs.get_logger().bind(conn=number, peer_pid=peer.pid, peer_uid=peer.uid)
        # The connection reads and writes the socket itself: waiting for readiness and then
        # calling recv_into or sendmsg saves the stream wrapper's extra trips through the event
        # loop on every request, and lets a large frame be received in place.
        self._socket: socket.socket = stream.extra(SocketAttribute.raw_socket)
        widen_send_buffer(self._socket)
        self._readiness: _ReadReadiness | None = None
        self._send_lock = anyio.Lock()
        self._calls: dict[int, _Call] = {}
        self._next_msgid = 0
        self._cancel_scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"Connection(number={self.number}, peer_pid={self.peer.pid})"

    async def serve(self) -> None:
        # No buffer: the reader waits for the worker, so a peer that sends requests without
        # reading responses holds at most one decoded request besides the one being handled.
        send, receive = anyio.create_memory_object_stream[Request](0)
        if _on_asyncio():
            self._readiness = _ReadReadiness(self._socket)
        try:
            async with anyio.create_task_group() as tg:
                self._cancel_scope = tg.cancel_scope
                tg.start_soon(self._work, receive)
                try:
                    await self._read(send)
                finally:
                    # The worker may be waiting for a callback that can no longer arrive.
                    self._fail_calls()
        finally:
            self._fail_calls()
            if self._readiness is not None:
                self._readiness.close()
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    def _fail_calls(self) -> None:
        self.closed = True
        for call in self._calls.values():
            call.error = {"code": int(ErrorCode.CALLBACK_FAILED), "message": "the client disconnected"}
            call.done.set()

    def stop(self) -> None:
        """Cancel this connection (daemon shutdown)."""
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _read(self, requests: MemoryObjectSendStream[Request]) -> None:
        settings = self.state.settings
        async with requests:
            try:
                first = await self._first_byte()
            except _Closed:
                return
            self.framed = not is_unframed_start(first)
            if self.framed and first > _MAX_FRAME_FIRST_BYTE:
                # No length this daemon accepts starts with this byte (HTTP, text, …).
                await self._fail(
                    ErrorCode.PARSE_ERROR,
                    "not a secretd message: expected msgpack-rpc (a msgpack array) "
                    "or a 4-byte big-endian length prefix; see docs/protocol.md",
                )
                return
            cls = _FramedDecoder if self.framed else _UnframedDecoder
            decoder = cls(settings.max_message_size)
            # Whether the last messages handled included a chunk request.  Only then is the
            # next request likely to follow within microseconds, so only then is it polled for.
            answered_chunk = False
            while True:
                # Read live, so that a reload changes it for open connections too.
                poll_us = self.state.settings.busy_poll_us if answered_chunk else 0
                answered_chunk = False
                try:
                    messages = await self._receive(decoder, settings.idle_timeout, poll_us)
                except _Closed:
                    return
                except TimeoutError:
                    await self._fail(ErrorCode.INVALID_REQUEST, f"incomplete message: no data for {settings.idle_timeout:g} s")
                    return
                except MessageTooLarge as exc:
                    await self._fail(ErrorCode.MESSAGE_TOO_LARGE, str(exc))
                    return
                except ProtocolError as exc:
                    await self._fail(ErrorCode.PARSE_ERROR, str(exc))
                    return
                index = 0
                while index < len(messages):
                    message = messages[index]
                    index += 1
                    if isinstance(message, Request):
                        if message.method in _CHUNK_METHODS:
                            answered_chunk = True
                        if message.method == "stream.feed":
                            # Feeds that arrived together are masked with one scan.
                            feeds = [message]
                            while index < len(messages) and _is_feed(messages[index]) and len(feeds) < _MAX_BATCH:
                                feeds.append(messages[index])  # type: ignore[arg-type]
                                index += 1
                            if len(feeds) > 1:
                                await self._answer_feeds(feeds)
                                continue
                        if message.method in _INLINE_METHODS:
                            await self._answer_inline(message)
                        else:
                            await requests.send(message)
                    elif isinstance(message, Response):
                        call = self._calls.pop(message.msgid, None)
                        if call is not None:
                            call.error, call.result = message.error, message.result
                            call.done.set()

    async def _wait_readable(self) -> None:
        try:
            if self._readiness is not None:
                await self._readiness.wait()
            else:
                await anyio.wait_readable(self._socket)
        except (OSError, ValueError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise _Closed from None

    async def _first_byte(self) -> int:
        """Wait for the connection's first byte and return it, leaving it in the socket."""
        while True:
            await self._wait_readable()
            try:
                first = self._socket.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            except OSError:
                raise _Closed from None
            if not first:
                raise _Closed
            return first[0]

    async def _receive(
        self, decoder: _FramedDecoder | _UnframedDecoder, idle_timeout: float, poll_us: int = 0
    ) -> list[Request | Response | Notification]:
        """Receive once into the decoder's buffer; return the messages now complete.

        With ``poll_us`` above 0 and no partial message pending, the socket is
        polled for that many microseconds before waiting for readiness.  A
        message left unfinished for ``idle_timeout`` seconds raises ``TimeoutError``.
        """
        buffer = decoder.free()
        if poll_us > 0 and not decoder.pending:
            count = await self._poll_into(buffer, poll_us)
            if count is not None:
                return decoder.received(count)
        while True:
            # Waiting for readiness is also this task's checkpoint, so a peer that keeps
            # the socket full cannot starve the other connections.
            if decoder.pending:
                with anyio.fail_after(idle_timeout):
                    await self._wait_readable()
            else:
                await self._wait_readable()
            try:
                count = self._socket.recv_into(buffer)
            except BlockingIOError:
                continue
            except OSError:
                raise _Closed from None
            if count == 0:
                raise _Closed
            return decoder.received(count)

    async def _poll_into(self, buffer: memoryview, poll_us: int) -> int | None:
        """Poll the socket for up to ``poll_us`` microseconds and return the number of bytes received.

        Returns None when nothing arrived in time.  A client that masks output
        one chunk at a time sends its next request tens of microseconds after
        it reads a response, and waking from epoll for it costs as much again.
        On a 2-core VM, 1 MiB fed in 8 KiB chunks with nothing to mask took
        93-97 µs per feed without this poll and 57 µs with a 50 µs poll.
        Linux's SO_BUSY_POLL does the same for network sockets, but not for
        Unix ones.  Each try follows a checkpoint, so other connections are
        served meanwhile (the event loop polls epoll with a zero timeout while
        a task is ready), and a peer that keeps the socket full cannot starve them.
        """
        deadline = time.perf_counter() + poll_us / 1_000_000
        while True:
            await anyio.lowlevel.checkpoint()
            try:
                count = self._socket.recv_into(buffer)
            except BlockingIOError:
                if time.perf_counter() >= deadline:
                    return None
                continue
            except OSError:
                raise _Closed from None
            if count == 0:
                raise _Closed
            return count

    async def _fail(self, code: ErrorCode, message: str) -> None:
        """Tell the peer why its connection is being closed, then let the reader end."""
        self.log.warning(logs.PROTOCOL_ERROR, code=code.name, error=message)
        try:
            with anyio.fail_after(1):
                await self._send([NOTIFICATION, "error", [error_value(code, message)]])
        except (TimeoutError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    @property
    def busy(self) -> bool:
        """Whether a request is being answered (the reader and the worker may each have one)."""
        return self._in_flight > 0

    async def _answer_feeds(self, requests: list[Request]) -> None:
        """Respond to consecutive ``stream.feed`` requests, with one scan when they feed one stream.

        Otherwise, or when one of them would fail, each is handled on its
        own, with the same results and errors as if they had come apart.
        """
        await self._counted(self._respond_to_feeds(requests))

    async def _respond_to_feeds(self, requests: list[Request]) -> None:
        try:
            started = time.monotonic()
            results: Any = NOT_READY
            params: list[Any] = []
            if not self.state.draining:
                try:
                    params = [self._params(request) for request in requests]
                except RpcError:
                    params = []
            if params:
                try:
                    results = stream_feed_many_now(self, params)
                except Exception as exc:
                    self._log_internal_error("stream.feed", exc)
                    error = self._wire_error(
                        error_value(ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__}); see the daemon's log")
                    )
                    for request in requests:
                        await self._send([RESPONSE, request.msgid, error, None])
                    return
            if results is NOT_READY:
                for request in requests:
                    await self._answer(request)
                return
            if self.log.is_enabled_for(logging.DEBUG):
                self.log.debug(
                    logs.REQUEST, method="stream.feed", scope=self._scope_ref(params[0]), requests=len(requests),
                    duration_ms=round((time.monotonic() - started) * 1000, 3), outcome="ok",
                )
            for request, result in zip(requests, results):
                await self._send([RESPONSE, request.msgid, None, result])
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.stop()

    def _log_internal_error(self, method: str, exc: Exception) -> None:
        # The message may quote a value, so only the type and place are logged.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else "?"
        self.log.error(logs.INTERNAL_ERROR, method=method, error_type=type(exc).__name__, where=where)

    async def _answer_inline(self, request: Request) -> None:
        await self._counted(self._answer(request))

    async def _counted(self, work: Awaitable[None]) -> None:
        """Await ``work`` as a request in flight; once draining, stop when none is left."""
        self._in_flight += 1
        try:
            await work
        finally:
            self._in_flight -= 1
        if self.state.draining and not self.busy:
            self.stop()

    def _wire_error(self, error: dict[str, Any]) -> Any:
        """Return ``error`` in the shape the peer reads.

        Plain msgpack-rpc clients (Neovim, pynvim) read an error as [type, message],
        where type 0 is Neovim's "exception", so the stable code goes into the message.
        """
        if self.framed is not False:
            return error
        code = ErrorCode(error["code"])
        return [0, f"{code.name} ({int(code)}): {error['message']}"]

    async def _work(self, requests: MemoryObjectReceiveStream[Request]) -> None:
        async with requests:
            async for request in requests:
                await self._answer_inline(request)

    async def _answer(self, request: Request) -> None:
        started = time.monotonic()
        method = request.method
        error: dict[str, object] | None = None
        result: Any = None
        params: Any = None
        # The scope ref for the log is looked up before the handler runs, because the
        # handler may close the scope or stream.  Chunk handlers change neither, so theirs
        # waits until the log event is known to be emitted.
        scope_ref = None
        ref_pending = False
        try:
            handler = HANDLERS.get(method)
            if handler is None:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"unknown method {method[:64]!r}; see docs/protocol.md")
            params = self._params(request)
            chunk_handler = CHUNK_HANDLERS.get(method)
            if chunk_handler is not None:
                ref_pending = True
                if self.state.draining:
                    raise RpcError(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down; reconnect in a moment")
                result = chunk_handler(self, params)
                if result is NOT_READY:
                    ref_pending = False
                    scope_ref = self._scope_ref(params)
                    result = await handler(self, params)
            else:
                scope_ref = self._scope_ref(params)
                if self.state.draining:
                    raise RpcError(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down; reconnect in a moment")
                result = await handler(self, params)
        except RpcError as exc:
            error = error_value(exc.code, exc.message)
        except Exception as exc:
            self._log_internal_error(method, exc)
            error = error_value(ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__}); see the daemon's log")
        # Output chunks arrive many times a second: their events are debug-level
        # unless they fail, so that the default log holds one line per command, not per chunk.
        level = logging.DEBUG if error is None and method in _CHUNK_METHODS else logging.INFO
        if self.log.is_enabled_for(level):
            if ref_pending:
                scope_ref = self._scope_ref(params)
            self.log.log(
                level,
                logs.REQUEST,
                method=method if method in HANDLERS else "<unknown>",
                scope=scope_ref,
                duration_ms=round((time.monotonic() - started) * 1000, 3),
                outcome="ok" if error is None else ErrorCode(error["code"]).name,  # type: ignore[arg-type]
            )
        try:
            await self._send([RESPONSE, request.msgid, None if error is None else self._wire_error(error), result])
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.stop()

    @staticmethod
    def _params(request: Request) -> Any:
        """Convert a request's positional params to its method's struct; raise INVALID_PARAMS."""
        params_type = METHODS[request.method]
        if params_type is None:
            return None
        try:
            return msgspec.convert(request.params, params_type, strict=False)
        except msgspec.ValidationError as exc:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"invalid params for {request.method!r}: "
                f"{safe_validation_message(exc, root_type=params_type, data=request.params, strict=False)}",
            ) from None

    def _scope_ref(self, params: Any) -> str | None:
        stream = self.streams.get(getattr(params, "stream", None))  # type: ignore[arg-type]
        if stream is not None:
            return stream[0].ref
        scope_id = getattr(params, "scope", False)
        if scope_id is False:
            return None
        if scope_id is None:
            return "global"
        try:
            return self.state.store.get(scope_id).ref
        except RpcError:
            return "unknown"

    async def _send(self, message: list[Any]) -> None:
        payload = message[-1]
        framed = self.framed is not False
        if isinstance(payload, bytes) and len(payload) >= LARGE_PAYLOAD:
            # Masked output goes out as its own buffer instead of being copied into the frame.
            parts = encode_frame_parts([*message[:-1], b""], payload, framed=framed)
        else:
            parts = [encode_frame(message) if framed else _encoder.encode(message)]
        if not self._send_lock.locked():
            # Most responses fit in the socket buffer: one sendmsg, without waiting for the
            # lock or the event loop.  Nothing can interleave, because this does not yield.
            parts = self._send_now(parts)
            if not parts:
                return
            # Part of the message is out; the lock must be taken before anything yields.
            self._send_lock.acquire_nowait()
        else:
            await self._send_lock.acquire()
        try:
            while parts:
                try:
                    await anyio.wait_writable(self._socket)
                except (ValueError, anyio.ClosedResourceError) as exc:
                    raise anyio.ClosedResourceError from exc
                parts = self._send_now(parts)
        finally:
            self._send_lock.release()

    def _send_now(self, parts: list[Any]) -> list[Any]:
        """Send what the socket takes without blocking; return the buffers, or parts of them, left over."""
        try:
            sent = self._socket.sendmsg(parts) if len(parts) > 1 else self._socket.send(parts[0])
        except BlockingIOError:
            return parts
        for index, part in enumerate(parts):
            if sent < len(part):
                return [memoryview(part)[sent:], *parts[index + 1 :]]
            sent -= len(part)
        return []

    async def call(self, method: str, params: list[Any]) -> Any:
        """Send a request to the client and wait for its result (for client-held sources).

        The resolver's timeout bounds the wait.  Raises ``SourceFailed`` with
        the client's error message.
        """
        if self.closed:
            raise SourceFailed("the client that registered this source has disconnected")
        self._next_msgid = (self._next_msgid + 1) % 2**32
        msgid = self._next_msgid
        call = self._calls[msgid] = _Call()
        try:
            await self._send([REQUEST, msgid, method, params])
            await call.done.wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise SourceFailed("the client that registered this source has disconnected") from None
        finally:
            self._calls.pop(msgid, None)
        if call.error is not None:
            message = call.error.get("message") if isinstance(call.error, dict) else None
            raise SourceFailed(f"the client-held source failed: {str(message or call.error)[:200]}")
        return call.result

    def audit(self, action: str, scope: Scope, decisions: dict[str, str]) -> None:
        """Log one audit event for a resolution: who asked, in which scope, what was decided."""
        self.log.info(logs.RESOLUTION, action=action, scope=scope.ref, decisions=decisions, client=self.client_name)
