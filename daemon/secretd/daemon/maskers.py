"""One compiled masker per scope, rebuilt only when the scope's values change."""

from __future__ import annotations

import time
import weakref

from . import logs
from .masking import MAX_VALUE_BYTES, Masker, MaskPolicy
from .store import Scope, Store

__all__ = ["MaskerCache"]


class MaskerCache:
    """Builds and keeps the masker of each scope: its own values and the global ones."""

    def __init__(self, store: Store, policy: MaskPolicy) -> None:
        self._store = store
        self.policy = policy
        # Keyed by the scope object itself (weakly), never by id(): a new scope may
        # reuse a dead one's address and must not inherit its masker.
        self._built: weakref.WeakKeyDictionary[Scope, tuple[tuple[int, int], Masker]] = weakref.WeakKeyDictionary()

    def for_scope(self, scope: Scope) -> Masker:
        """Return the scope's masker, building it if any value changed since the last build."""
        global_scope = self._store.global_scope
        key = (global_scope.version, scope.version if scope is not global_scope else -1)
        cached = self._built.get(scope)
        if cached is not None and cached[0] == key:
            return cached[1]
        values = list(global_scope.values())
        if scope is not global_scope:
            values.extend(scope.values())
        # Values over the limit are rejected on registration; this keeps one that slipped
        # through (an old config file, say) from breaking every mask call.
        too_long = [v for v in values if len(v.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES]
        if too_long:
            logs.get_logger().error("masker.value_too_long", scope=scope.ref, count=len(too_long))
            values = [v for v in values if len(v.encode("utf-8", "surrogatepass")) <= MAX_VALUE_BYTES]
        started = time.perf_counter()
        masker = Masker.build(values, self.policy)
        logger = logs.get_logger()
        logger.info(
            "masker.built", scope=scope.ref, values=len(values), patterns=masker.pattern_count,
            seconds=round(time.perf_counter() - started, 4),
        )
        if masker.skipped:
            # Each reason gives the value's index and what is wrong with it, never the value.
            logger.error(
                "masker.values_skipped", scope=scope.ref, count=len(masker.skipped),
                reasons=sorted({skipped.reason for skipped in masker.skipped}),
            )
        self._built[scope] = (key, masker)
        return masker

    def set_policy(self, policy: MaskPolicy) -> None:
        """Use a new policy (a reloaded placeholder) from the next mask call on."""
        if policy != self.policy:
            self.policy = policy
            self._built.clear()

    def forget(self, scope: Scope) -> None:
        self._built.pop(scope, None)
