"""``use_secretd``: put a daemon-backed registry into a local OpenHands conversation."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from secretd.protocol.messages import ReferenceMode

from ..blocking import Client
from ._registry import DEFAULT_CALLBACK_TIMEOUT, DEFAULT_LOOKUP_TTL, SecretdSecretRegistry

if TYPE_CHECKING:
    from openhands.sdk.conversation import LocalConversation

__all__ = ["use_secretd"]


def use_secretd(
    conversation: LocalConversation,
    *,
    socket_path: str | os.PathLike[str] | None = None,
    client: Client | None = None,
    mode: ReferenceMode | None = None,
    lookup_ttl: float = DEFAULT_LOOKUP_TTL,
    callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT,
) -> SecretdSecretRegistry:
    """Replace ``conversation``'s secret registry with one backed by a new secretd scope.

    Secrets the conversation already has (its ``secrets=`` argument, a
    restored state) move into the scope, and so do the values its registry
    tracked for masking.  Call it before the first ``send_message`` or
    ``run``: the agent puts secret names into the system prompt when it
    starts.  Raises ``DaemonNotRunning`` when nothing listens on the socket.
    """
    state = conversation.state
    registry = SecretdSecretRegistry.connect(
        socket_path,
        client=client,
        label=f"openhands:{conversation.id}",
        mode=mode,
        lookup_ttl=lookup_ttl,
        callback_timeout=callback_timeout,
    )
    try:
        with state:
            previous = state.secret_registry
            if previous.secret_sources:
                registry.update_secrets(dict(previous.secret_sources))
            # NOTE: _exported_values is private to openhands-sdk 1.58.2.  It contains
            # the values the old registry resolved, which must stay masked.
            tracked = getattr(previous, "_exported_values", None)
            if tracked:
                registry.track_exported_values(dict(tracked))
            state.secret_registry = registry
    except BaseException:
        registry.close()
        raise
    return registry
