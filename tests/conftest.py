"""Fixtures that start the real daemon on a real Unix socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from secretd.client import Client

REPO = Path(__file__).resolve().parent.parent
#: The public masking and resolution cases, kept beside the repository (``../shared/cases``);
#: ``$SECRETD_CASES`` names another copy.
CASES = Path(os.environ.get("SECRETD_CASES", REPO.parent / "shared" / "cases" / "cases.jsonl"))


def load_cases() -> list[dict[str, Any]]:
    """Return every case, or skip the calling module when the file is absent (an error under CI)."""
    if not CASES.exists():
        message = f"case file {CASES} not found; set SECRETD_CASES to its path"
        if os.environ.get("CI"):
            raise FileNotFoundError(message)
        pytest.skip(message, allow_module_level=True)
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


@dataclass
class Daemon:
    """A running ``secretd`` process and where its socket and log are."""

    socket_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    directory: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: object) -> Client:
        return Client(self.socket_path, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def short_tempdir() -> Path:
    """A private directory with a short path: AF_UNIX paths stop at 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"secretd exited with status {process.returncode} before listening")
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(os.fspath(path))
                return
            except OSError:
                pass
            finally:
                probe.close()
        time.sleep(0.02)
    raise RuntimeError(f"secretd did not listen on {path} within {timeout} s")


def start_daemon(directory: Path, *extra: str, env: dict[str, str] | None = None, config: str | None = None) -> Daemon:
    socket_path = directory / "run" / "secretd.sock"
    log_path = directory / "secretd.log"
    argv = [sys.executable, "-m", "secretd.daemon", "--socket", str(socket_path), "--log-format", "json",
            "--log-level", "debug"]
    if config is not None:
        config_path = directory / "config.toml"
        config_path.write_text(config)
        argv += ["--config", str(config_path)]
    argv += list(extra)
    child_env = {**os.environ, "XDG_CONFIG_HOME": str(directory / "config-home"), **(env or {})}
    child_env.pop("NOTIFY_SOCKET", None)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, env=child_env, stdin=subprocess.DEVNULL)
    wait_for_socket(socket_path, process)
    return Daemon(socket_path, log_path, process, directory, child_env)


@pytest.fixture
def tmp_short() -> Iterator[Path]:
    directory = short_tempdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def daemon(tmp_short: Path) -> Iterator[Daemon]:
    """A real daemon on a socket of its own; stopped with SIGTERM after the test."""
    process = start_daemon(tmp_short)
    yield process
    status = process.stop()
    assert status == 0, f"secretd exited with {status}; log:\n{process.log_text()[-4000:]}"


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with daemon.client() as connected:
        yield connected


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]
