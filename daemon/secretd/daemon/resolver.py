"""Resolution of secrets: cache with a TTL, single-flight, timeouts and back-off.

Concurrent requests for one secret share one fetch, which runs in the
daemon's own task group so that a caller that gives up does not cancel it
for the others.  After a failure the source is not tried again until its
back-off has passed; meanwhile the last good value is served as stale if it
is younger than ``max_stale``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from secretd.protocol.sources import StaticSource

from . import logs
from .errors import SourceFailed
from .masking import MAX_VALUE_BYTES
from .sources import ClientCall, fetch
from .store import Secret

__all__ = ["Outcome", "Resolution", "Resolver"]

Outcome = Literal["static", "hit", "miss", "stale"]

#: Seconds a source may take when its spec sets no timeout.
DEFAULT_TIMEOUT = 10.0


@dataclass
class Resolution:
    value: str
    outcome: Outcome

    def __repr__(self) -> str:
        return f"Resolution(outcome={self.outcome!r})"


@dataclass(eq=False)
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    value: str | None = None
    error: str | None = None


def _backoff(failures: int) -> float:
    """Seconds to wait before trying a failing source again: 1, 2, 4, … up to 60."""
    return float(min(60, 2 ** max(0, failures - 1)))


class Resolver:
    """Resolves secrets for the daemon; one per daemon."""

    def __init__(self, task_group: TaskGroup, *, max_stale: float = 300.0) -> None:
        self._task_group = task_group
        self._flights: dict[Secret, _Flight] = {}
        self.max_stale = max_stale
        self._log = logs.get_logger()

    async def resolve(self, secret: Secret, client_call: ClientCall | None = None) -> Resolution:
        """Return the secret's value, from the cache or its source.

        Raises ``SourceFailed`` when no value can be had.
        """
        source = secret.spec.source
        cache = secret.cache
        if isinstance(source, StaticSource):
            if not source.value:
                raise SourceFailed("the static value is empty")
            return Resolution(source.value, "static")
        now = time.monotonic()
        ttl = getattr(source, "ttl", 0.0)
        if cache.value is not None and cache.resolved_at is not None and now - cache.resolved_at < ttl:
            return Resolution(cache.value, "hit")
        if cache.failed_at is not None and now < cache.failed_at + _backoff(cache.failures):
            return self._stale_or_raise(secret, cache.error or "source failed")
        flight = self._flights.get(secret)
        if flight is None:
            flight = _Flight()
            self._flights[secret] = flight
            self._task_group.start_soon(self._fly, secret, flight, client_call)
        await flight.done.wait()
        if flight.value is not None:
            return Resolution(flight.value, "miss")
        return self._stale_or_raise(secret, flight.error or "source failed")

    def _stale_or_raise(self, secret: Secret, reason: str) -> Resolution:
        cache = secret.cache
        if cache.value is not None and cache.resolved_at is not None:
            if time.monotonic() - cache.resolved_at <= self.max_stale:
                return Resolution(cache.value, "stale")
        raise SourceFailed(reason)

    async def _fly(self, secret: Secret, flight: _Flight, client_call: ClientCall | None) -> None:
        try:
            await self._fetch_into(secret, flight, client_call)
        finally:
            # Set even when cancelled at shutdown, so that no waiter hangs.
            if flight.value is None and flight.error is None:
                flight.error = "the daemon is shutting down"
            self._flights.pop(secret, None)
            flight.done.set()

    async def _fetch_into(self, secret: Secret, flight: _Flight, client_call: ClientCall | None) -> None:
        source = secret.spec.source
        timeout = getattr(source, "timeout", DEFAULT_TIMEOUT)
        started = time.monotonic()
        try:
            with anyio.fail_after(timeout):
                value = await fetch(source, secret.name, client_call)
            if not value:
                raise SourceFailed("the source returned an empty value")
            if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
                raise SourceFailed(f"the value is longer than {MAX_VALUE_BYTES} bytes, the most that can be masked")
        except SourceFailed as exc:
            flight.error = exc.reason
        except TimeoutError:
            flight.error = f"timed out after {timeout:g} s"
        except Exception as exc:  # a bug in a source must not take the daemon down
            flight.error = f"internal error ({type(exc).__name__})"
        else:
            flight.value = value
        cache = secret.cache
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        if flight.value is not None:
            cache.value = flight.value
            cache.resolved_at = time.monotonic()
            cache.error = None
            cache.failed_at = None
            cache.failures = 0
            secret.remember(flight.value)
            self._log.debug(
                logs.SOURCE_RESOLVED, secret=secret.name, scope=secret.scope.ref,
                source=secret.source_kind, duration_ms=duration_ms,
            )
        else:
            cache.error = flight.error
            cache.failed_at = time.monotonic()
            cache.failures += 1
            self._log.warning(
                logs.SOURCE_FAILED, secret=secret.name, scope=secret.scope.ref, source=secret.source_kind,
                reason=flight.error, failures=cache.failures, retry_in=_backoff(cache.failures),
                duration_ms=duration_ms,
            )
