"""The daemon's shared state: settings, scopes, resolver and maskers."""

from __future__ import annotations

import os
import secrets as _random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from .config import Config, DaemonSettings
from .masking import MaskPolicy
from .maskers import MaskerCache
from .resolver import Resolver
from .store import Store

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["DaemonState"]


class DaemonState:
    """Everything a request handler may touch, owned by one running daemon."""

    def __init__(self, config: Config, socket_path: Path, task_group: TaskGroup, config_path: Path | None) -> None:
        self.config = config
        self.config_path = config_path
        self.socket_path = socket_path
        self.instance_id = _random.token_hex(16)
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.store = Store(config.daemon.max_scopes)
        self.resolver = Resolver(task_group, max_stale=config.daemon.max_stale)
        self.maskers = MaskerCache(self.store, MaskPolicy(placeholder=config.daemon.placeholder.encode()))
        self.connections: set[Connection] = set()
        self.draining = False

    @property
    def settings(self) -> DaemonSettings:
        return self.config.daemon
