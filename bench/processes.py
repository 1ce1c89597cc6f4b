"""The processes the benchmark starts (a secretd daemon, the echo server) and their memory use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from secretd.daemon.config import DaemonSettings

__all__ = ["Child", "memory_kib", "start_daemon", "start_echo_server"]

_ECHO_SERVER = Path(__file__).with_name("echo_server.py")


@dataclass
class Child:
    """A server process started by the benchmark, with its socket and log file."""

    process: subprocess.Popen[bytes]
    socket_path: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> int:
        """Send SIGTERM to this process (by its PID) and wait; SIGKILL it after `timeout` seconds."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def log_tail(self, limit: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:]


def start_daemon(directory: Path, *, max_secrets_per_scope: int) -> Child:
    """Start ``secretd`` from this interpreter's environment on a socket in `directory`.

    The daemon reads a config file written here, which raises the limit on
    secrets per scope to `max_secrets_per_scope`, and no other config.
    """
    socket_path = directory / "secretd.sock"
    log_path = directory / "secretd.log"
    config_path = directory / "config.toml"
    config_path.write_text(f"[daemon]\nmax_secrets_per_scope = {max_secrets_per_scope}\n")
    argv = [
        sys.executable, "-m", "secretd.daemon",
        "--socket", str(socket_path),
        "--config", str(config_path),
        "--log-level", "warning",
    ]
    env = {**os.environ, "XDG_CONFIG_HOME": str(directory / "config-home")}
    env.pop("NOTIFY_SOCKET", None)
    return _start("secretd", argv, socket_path, log_path, env)


def start_echo_server(directory: Path, *, busy_poll_us: int | None = None, name: str = "echo") -> Child:
    """Start the length-prefixed echo server on the socket `name`.sock in `directory`.

    It polls for the next frame for `busy_poll_us` microseconds after sending
    one back, by default as long as secretd does (its ``busy_poll_us``
    setting), so that the ceiling gets the same help as the daemon.
    """
    socket_path = directory / f"{name}.sock"
    if busy_poll_us is None:
        busy_poll_us = DaemonSettings().busy_poll_us
    argv = [sys.executable, str(_ECHO_SERVER), "--busy-poll-us", str(busy_poll_us), str(socket_path)]
    return _start("the echo server", argv, socket_path, directory / f"{name}.log", dict(os.environ))


def _start(name: str, argv: list[str], socket_path: Path, log_path: Path, env: dict[str, str]) -> Child:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    child = Child(process, socket_path, log_path)
    try:
        _wait_for_socket(name, child, timeout=30.0)
    except RuntimeError:
        child.stop()
        raise
    return child


def _wait_for_socket(name: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with status {child.process.returncode} before listening; "
                f"log:\n{child.log_tail()}"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(child.socket_path))
            return
        except OSError:
            time.sleep(0.02)
        finally:
            probe.close()
    raise RuntimeError(f"{name} did not listen on {child.socket_path} within {timeout} s; log:\n{child.log_tail()}")


def memory_kib(pid: int) -> dict[str, int]:
    """Return the resident set size (`rss_kib`) and its peak (`peak_rss_kib`) of a process, from /proc."""
    fields = {"VmRSS": "rss_kib", "VmHWM": "peak_rss_kib"}
    result = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in fields:
                result[fields[key]] = int(rest.split()[0])
    return result
