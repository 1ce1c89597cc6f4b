"""One compiled masker per scope, rebuilt only when the scope's values change."""

from __future__ import annotations

from .masking import Masker, MaskPolicy
from .store import Scope, Store

__all__ = ["MaskerCache"]


class MaskerCache:
    """Builds and keeps the masker of each scope: its own values and the global ones."""

    def __init__(self, store: Store, policy: MaskPolicy) -> None:
        self._store = store
        self.policy = policy
        self._built: dict[int, tuple[tuple[int, int], Masker]] = {}

    def for_scope(self, scope: Scope) -> Masker:
        """Return the scope's masker, building it if any value changed since the last build."""
        global_scope = self._store.global_scope
        key = (global_scope.version, scope.version if scope is not global_scope else -1)
        cached = self._built.get(id(scope))
        if cached is not None and cached[0] == key:
            return cached[1]
        values = list(global_scope.values())
        if scope is not global_scope:
            values.extend(scope.values())
        masker = Masker.build(values, self.policy)
        self._built[id(scope)] = (key, masker)
        return masker

    def set_policy(self, policy: MaskPolicy) -> None:
        """Use a new policy (a reloaded placeholder) from the next mask call on."""
        if policy != self.policy:
            self.policy = policy
            self._built.clear()

    def forget(self, scope: Scope) -> None:
        self._built.pop(id(scope), None)
