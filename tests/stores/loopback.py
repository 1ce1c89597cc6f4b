"""An HTTP server on 127.0.0.1, in a thread of its own, that records every request it receives."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["LoopbackServer", "Reply", "Request", "Route", "serve"]


@dataclass(frozen=True)
class Request:
    """One GET request as the server received it, with lower-case header names."""

    path: str
    query: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Reply:
    """The response to send: status, body, and seconds to wait before sending it."""

    status: int
    body: bytes
    content_type: str = "text/plain"
    delay: float = 0.0


#: Function that maps a request to its reply. It runs in the server's handler threads.
Route = Callable[[Request], Reply]


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server bound to 127.0.0.1 on a free port."""

    # server_close() joins the handler threads, and a delayed reply ends early once `released` is set.
    daemon_threads = False

    def __init__(self, route: Route) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.route = route
        self.requests: list[Request] = []
        self.released = threading.Event()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def count(self, path: str) -> int:
        """Return how many requests for ``path`` the server has received."""
        with self._lock:
            return sum(1 for request in self.requests if request.path == path)


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        parts = urlsplit(self.path)
        request = Request(parts.path, parts.query, {name.lower(): value for name, value in self.headers.items()})
        self.server.record(request)
        reply = self.server.route(request)
        if reply.delay:
            self.server.released.wait(reply.delay)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except ConnectionError:
            pass  # the daemon gave up on a delayed reply and closed the connection

    def log_message(self, format: str, *args: object) -> None:
        pass  # the tests read `requests` instead of an access log


@contextmanager
def serve(route: Route) -> Iterator[LoopbackServer]:
    """Run a loopback server for the duration of the block, then stop it and join its threads."""
    server = LoopbackServer(route)
    thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
