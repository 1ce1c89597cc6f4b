"""structlog configuration for the daemon and the names of its log events.

Events are stable keys; variables go into fields.  No event ever carries a
secret value: fields hold names, scope refs, peer ids, durations and error
codes only.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure_logging", "get_logger"]

LogFormat = Literal["console", "json"]

#: Event names, one constant per kind of event.
STARTED = "daemon.started"
READY = "daemon.ready"
STOPPING = "daemon.stopping"
STOPPED = "daemon.stopped"
RELOADED = "config.reloaded"
RELOAD_FAILED = "config.reload_failed"
PEER_REJECTED = "connection.rejected"
CONNECTION_LIMIT = "connection.limit_reached"
CONNECTION_OPENED = "connection.opened"
CONNECTION_CLOSED = "connection.closed"
PROTOCOL_ERROR = "connection.protocol_error"
ACCEPT_FAILED = "accept.failed"
REQUEST = "request.handled"
INTERNAL_ERROR = "request.internal_error"
SOURCE_FAILED = "source.failed"
SOURCE_RESOLVED = "source.resolved"
RESOLUTION = "audit.resolution"
VALUE_TOO_SHORT = "secret.too_short"
SCOPE_OPENED = "scope.opened"
SCOPE_CLOSED = "scope.closed"


def configure_logging(log_format: LogFormat = "console", level: str = "info") -> None:
    """Send structlog events to stderr, as JSON lines or as readable console lines."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger() -> structlog.typing.FilteringBoundLogger:
    """Return the daemon's logger."""
    return structlog.get_logger("secretd")  # type: ignore[no-any-return]
