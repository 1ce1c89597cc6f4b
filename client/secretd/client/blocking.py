"""Blocking client for synchronous tool code.

One socket; a lock serialises threads, and a call holds it until its
response arrives.  While it waits it also answers the daemon's
``source.get`` requests, so client-held sources work without a background
thread.  A mask stream may keep several ``stream.feed`` requests in flight
(``Client.stream(scope, pipeline=N)``).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from secretd.protocol import PROTOCOL_VERSION
from secretd.protocol.errors import MessageTooLarge, ProtocolError, RemoteError, SecretdError, TransportError
from secretd.protocol.framing import LARGE_PAYLOAD, FrameBuffer, encode_frame, encode_frame_parts, widen_send_buffer
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

__all__ = ["DEFAULT_BUSY_POLL_US", "MAX_BUSY_POLL_US", "Client", "MaskStream"]

#: Microseconds ``Client`` polls for the response to a chunk request by default.
DEFAULT_BUSY_POLL_US = 200
#: Largest ``busy_poll_us`` accepted, as for the daemon's setting.
MAX_BUSY_POLL_US = 1000

#: Methods called once per chunk of output, whose responses the client polls for.
_CHUNK_METHODS = frozenset({"mask", "stream.feed", "stream.close"})

# Responses may carry up to the daemon's maximum message size; a little more for the envelope.
_MAX_RESPONSE = 1 << 30

_TIMEVAL = struct.Struct("@ll")


def _set_kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Bound each blocking send and receive by ``timeout`` seconds in the kernel.

    A Python socket timeout polls before every send and receive, one more
    system call per operation; SO_SNDTIMEO and SO_RCVTIMEO give the same bound
    without it.  An operation that times out fails with EAGAIN.
    """
    seconds, fraction = divmod(timeout, 1)
    # A zero timeval would mean no bound at all.
    microseconds = max(int(fraction * 1_000_000), 1 if seconds == 0 else 0)
    value = _TIMEVAL.pack(int(seconds), microseconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _rest(parts: list[Any], sent: int) -> list[Any]:
    """Return what is left of ``parts`` after the first ``sent`` bytes went out."""
    for index, part in enumerate(parts):
        if sent < len(part):
            return [memoryview(part)[sent:], *parts[index + 1 :]]
        sent -= len(part)
    return []


class Client:
    """A blocking connection to secretd.

    ``Client()`` connects to the default socket and performs the version
    handshake; ``instance_id`` then names the daemon process, so a caller can
    tell a reconnect to a new daemon from one to the same.  ``timeout`` bounds
    each wait for the daemon, in seconds (``None``: no bound).

    ``busy_poll_us`` is how many microseconds a wait for the response to
    ``mask``, ``stream.feed`` or ``stream.close`` polls the socket without
    sleeping before it blocks, and 0 turns polling off.  The daemon responds
    to a small chunk within tens of microseconds, and waking a thread that
    slept for it costs about as much again.  On a 2-core VM, feeding 1 MiB
    in 8 KiB chunks with nothing to mask took 57 µs per feed without polling
    here and 32 µs with 200 µs (the daemon's ``busy_poll_us`` at 50 in
    both).  The price is up to that much CPU time per chunk.  Pass 0 where
    other processes keep every core busy, because a poll then takes CPU
    time from the daemon it waits for.  ``AsyncClient`` does not poll,
    because a poll would block its event loop.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = 60.0,
        client_name: str = "secretd-client",
        busy_poll_us: int = DEFAULT_BUSY_POLL_US,
    ) -> None:
        if (isinstance(busy_poll_us, bool) or not isinstance(busy_poll_us, int)
                or not 0 <= busy_poll_us <= MAX_BUSY_POLL_US):
            raise ValueError(
                f"busy_poll_us must be an int from 0 to {MAX_BUSY_POLL_US} (microseconds), not {busy_poll_us!r}"
            )
        self.socket_path = Path(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self.busy_poll_us = busy_poll_us
        self.client_name = client_name
        self._lock = threading.RLock()
        self._callbacks: dict[str, SourceCallback] = {}
        self._sock: socket.socket | None = None
        self._msgid = 0
        self._frames = FrameBuffer(_MAX_RESPONSE)
        #: Messages received and decoded but not yet handled, in order of arrival.
        self._inbox: deque[Request | Response | Notification] = deque()
        #: msgids of pipelined requests whose responses have not been collected yet.
        self._pipelined: set[int] = set()
        #: Responses to pipelined requests that arrived while a call waited for another one.
        self._kept: dict[int, Response] = {}
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
            widen_send_buffer(sock)
            try:
                sock.connect(os.fspath(self.socket_path))
            except OSError as exc:
                sock.close()
                raise connect_error(self.socket_path, exc) from None
            if self.timeout is not None and self.timeout > 0:
                sock.settimeout(None)
                _set_kernel_timeouts(sock, self.timeout)
            self._sock = sock
            self._frames = FrameBuffer(_MAX_RESPONSE)
            self.hello = convert(self.call("hello", PROTOCOL_VERSION, self.client_name), HelloResult)
            return self.hello

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._inbox.clear()
            self._pipelined.clear()
            self._kept.clear()

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
            sock = self._connected()
            try:
                msgid = self._send_request(sock, method, params)
                response = self._wait(sock, msgid, poll=method in _CHUNK_METHODS)
            except (OSError, TransportError) as exc:
                raise self._lost(method, exc) from None
            return _result(response)

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise TransportError("the client is closed; call connect() first")
        return self._sock

    def _lost(self, method: str, exc: OSError | TransportError) -> TransportError:
        """Close the connection after a failed send or receive; return the error to raise."""
        self.close()
        if isinstance(exc, TransportError):
            return exc
        reason = "timed out" if isinstance(exc, BlockingIOError) else exc.strerror or exc
        return TransportError(f"connection to secretd lost during {method!r}: {reason}")

    def _send_request(self, sock: socket.socket, method: str, params: tuple[Any, ...]) -> int:
        self._msgid = (self._msgid + 1) % 2**32
        msgid = self._msgid
        if params and isinstance(params[-1], bytes) and len(params[-1]) >= LARGE_PAYLOAD:
            # Output to mask goes out as its own buffer, not copied into the frame.
            parts = encode_frame_parts([REQUEST, msgid, method, [*params[:-1], b""]], params[-1])
        else:
            parts = [encode_frame([REQUEST, msgid, method, list(params)])]
        if self._pipelined:
            self._send_while_reading(sock, parts)
        elif len(parts) == 1:
            sock.sendall(parts[0])
        else:
            while parts:
                parts = _rest(parts, sock.sendmsg(parts))
        return msgid

    def _send_while_reading(self, sock: socket.socket, parts: list[Any]) -> None:
        """Send ``parts``, reading whatever the daemon sends meanwhile.

        With requests in flight the daemon may be blocked writing their
        responses, and so not reading: if this side only sent, both would wait
        on a full socket.
        """
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLOUT)
        timeout_ms = None if self.timeout is None else int(self.timeout * 1000)
        while True:
            try:
                parts = _rest(parts, sock.sendmsg(parts, (), socket.MSG_DONTWAIT))
            except BlockingIOError:
                pass
            if not parts:
                return
            events = poller.poll(timeout_ms)
            if not events:
                raise TimeoutError("timed out")
            if events[0][1] & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    self._receive(sock, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass

    def _receive(self, sock: socket.socket, flags: int = 0) -> None:
        """Receive once; decode the messages now complete into the inbox."""
        buffer = self._frames.free()
        count = sock.recv_into(buffer, 0, flags)
        if count == 0:
            raise TransportError("secretd closed the connection")
        try:
            bodies = self._frames.received(count)
        except MessageTooLarge as exc:
            raise ProtocolError(f"invalid frame from secretd: {exc}") from None
        # Every body is decoded before the next free(), which may reuse its bytes.
        self._inbox.extend(decode_message(body) for body in bodies)

    def _poll_receive(self, sock: socket.socket) -> bool:
        """Poll for up to ``busy_poll_us`` microseconds and return whether a receive got data.

        A poll only precedes a blocking receive, which SO_RCVTIMEO still bounds,
        and takes no longer than ``timeout``.
        """
        seconds = self.busy_poll_us / 1_000_000
        if self.timeout is not None:
            seconds = min(seconds, self.timeout)
        deadline = time.perf_counter() + seconds
        while True:
            try:
                self._receive(sock, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if time.perf_counter() >= deadline:
                    return False
                continue
            return True

    def _wait(self, sock: socket.socket, msgid: int, *, poll: bool = False) -> Response:
        """Return the response to ``msgid``, serving the daemon's ``source.get`` requests meanwhile.

        With ``poll``, each receive is preceded by a busy poll (``busy_poll_us``).
        """
        poll = poll and self.busy_poll_us > 0
        while True:
            while self._inbox:
                message = self._inbox.popleft()
                if isinstance(message, Response):
                    if message.msgid == msgid:
                        return message
                    if message.msgid in self._pipelined:
                        self._kept[message.msgid] = message
                elif isinstance(message, Request):
                    self._answer(sock, message)
                elif isinstance(message, Notification) and message.method == "error":
                    error = raise_remote(message.params[0] if message.params else None)
                    raise TransportError(f"secretd closed the connection: {error}")
            if poll and self._poll_receive(sock):
                continue
            self._receive(sock)

    def _answer(self, sock: socket.socket, request: Request) -> None:
        if request.method == "source.get":
            error, result = run_callback(self._callbacks, request.params)
        else:
            error, result = {"code": 3, "message": f"unknown method {request.method!r}"}, None
        sock.sendall(encode_frame([RESPONSE, request.msgid, error, result]))

    # Pipelined requests, for MaskStream.

    def _start(self, method: str, *params: Any) -> int:
        """Send a request without waiting for its response; return its msgid for ``_finish``."""
        with self._lock:
            sock = self._connected()
            try:
                msgid = self._send_request(sock, method, params)
            except (OSError, TransportError) as exc:
                raise self._lost(method, exc) from None
            self._pipelined.add(msgid)
            return msgid

    def _finish(self, msgid: int, method: str) -> Any:
        """Wait for the response to a request sent by ``_start`` and return its result."""
        with self._lock:
            response = self._kept.pop(msgid, None)
            if response is None:
                if msgid not in self._pipelined:
                    raise TransportError(f"the connection to secretd closed while {method!r} was in flight")
                sock = self._connected()
                try:
                    response = self._wait(sock, msgid, poll=method in _CHUNK_METHODS)
                except (OSError, TransportError) as exc:
                    raise self._lost(method, exc) from None
            self._pipelined.discard(msgid)
            return _result(response)

    def _abandon(self, msgids: Iterable[int]) -> None:
        """Drop the responses to requests sent by ``_start`` that will not be collected."""
        with self._lock:
            for msgid in msgids:
                self._pipelined.discard(msgid)
                self._kept.pop(msgid, None)

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
        return _output(self.call("mask", scope, data), "mask")

    def reload(self) -> dict[str, Any]:
        return dict(self.call("reload"))

    @contextmanager
    def stream(self, scope: str | None, *, pipeline: int = 1) -> Iterator[MaskStream]:
        """Open a mask stream; on leaving the block without error it is closed (flushed).

        ``pipeline`` is the maximum number of ``stream.feed`` requests in
        flight; see ``MaskStream``.
        """
        if pipeline < 1:
            raise ValueError(f"pipeline must be at least 1, not {pipeline}")
        stream = MaskStream(self, convert(self.call("stream.open", scope), int), pipeline=pipeline)
        try:
            yield stream
        except BaseException:
            stream._abandon()
            raise
        if not stream.closed:
            stream.close()


class MaskStream:
    """A daemon-side mask stream: ``feed`` returns what is safe to show, ``close`` the rest.

    With ``pipeline`` N above 1, ``feed`` sends its chunk and returns without
    waiting for the response while fewer than N feeds are in flight.  It
    returns ``b""`` until N are in flight, then the output of the oldest.  So
    the output of a chunk comes back N - 1 feeds later.  ``drain`` returns the
    output of every feed in flight, and ``close`` that output followed by the
    rest of the stream.  Joined in order, the outputs are the same as without
    pipelining.  The client and the daemon then work at the same time, and
    one receive can carry several requests or responses.

    When a pipelined feed fails, the error is raised where its output would
    have been returned, and the output of the feeds sent after it is dropped.
    """

    def __init__(self, client: Client, stream_id: int, *, pipeline: int = 1) -> None:
        if pipeline < 1:
            raise ValueError(f"pipeline must be at least 1, not {pipeline}")
        self._client = client
        self.id = stream_id
        self.pipeline = pipeline
        self.closed = False
        self._in_flight: deque[int] = deque()

    def __repr__(self) -> str:
        return f"MaskStream(id={self.id})"

    @property
    def in_flight(self) -> int:
        """Number of pipelined feeds whose output has not been returned yet."""
        return len(self._in_flight)

    def feed(self, data: bytes) -> bytes:
        if self.pipeline == 1:
            return _output(self._client.call("stream.feed", self.id, data), "stream.feed")
        self._in_flight.append(self._client._start("stream.feed", self.id, data))
        if len(self._in_flight) < self.pipeline:
            return b""
        return self._collect(1)

    def drain(self) -> bytes:
        """Wait for every feed in flight and return their output, in order."""
        return self._collect(len(self._in_flight))

    def close(self) -> bytes:
        self.closed = True
        try:
            in_flight_output = self.drain()
        except RemoteError:
            # Still release the daemon's stream; the feed's error is the one to report.
            try:
                self._client.call("stream.close", self.id)
            except RemoteError:
                pass
            raise
        return in_flight_output + _output(self._client.call("stream.close", self.id), "stream.close")

    def discard(self) -> None:
        """Drop the output of the feeds in flight and close the stream in the daemon, ignoring errors.

        For output that will not be shown, such as a failed command's, so that
        the daemon does not keep the stream until the connection closes.
        """
        if self.closed:
            return
        self.closed = True
        self._abandon()
        try:
            self._client.call("stream.close", self.id)
        except SecretdError:
            pass  # the daemon is gone or has dropped the stream already

    def _collect(self, count: int) -> bytes:
        pieces = []
        for _ in range(count):
            try:
                result = self._client._finish(self._in_flight.popleft(), "stream.feed")
            except (RemoteError, TransportError):
                self._abandon()
                raise
            pieces.append(_output(result, "stream.feed"))
        return b"".join(pieces)

    def _abandon(self) -> None:
        self._client._abandon(self._in_flight)
        self._in_flight.clear()


def _result(response: Response) -> Any:
    if response.error is not None:
        raise raise_remote(response.error)
    return response.result


def _output(result: Any, method: str) -> bytes:
    if not isinstance(result, bytes):
        raise ProtocolError(f"{method} returned no bytes")
    return result
