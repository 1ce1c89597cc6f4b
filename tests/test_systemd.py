"""The user units, checked with systemd's own tools, and sd_notify readiness."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secretd.client import Client, SecretdError

from .conftest import REPO

pytestmark = pytest.mark.systemd


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package systemd)")
    return path


def test_units_verify_cleanly(tmp_short: Path) -> None:
    analyze = _need("systemd-analyze")
    runtime = tmp_short / "runtime"
    runtime.mkdir(mode=0o700)
    units = tmp_short / "units"
    secretd = Path(sys.executable).with_name("secretd")
    subprocess.run([REPO / "scripts" / "install-systemd", str(units), str(secretd)], check=True,
                   capture_output=True)
    assert f"ExecStart={secretd} --log-format json" in (units / "secretd.service").read_text()
    result = subprocess.run(
        [analyze, "--user", "verify", str(units / "secretd.socket"), str(units / "secretd.service")],
        capture_output=True, text=True, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_socket_unit_settings() -> None:
    text = (REPO / "systemd" / "secretd.socket").read_text()
    assert "ListenStream=%t/secretd/secretd.sock" in text
    assert "SocketMode=0600" in text
    assert "DirectoryMode=0700" in text
    service = (REPO / "systemd" / "secretd.service").read_text()
    assert "Type=notify" in service
    assert "Restart=on-failure" in service


def test_socket_activation_answers_first_connection(tmp_short: Path) -> None:
    activate = _need("systemd-socket-activate")
    path = tmp_short / "act.sock"
    log = open(tmp_short / "act.log", "wb")
    process = subprocess.Popen(
        [activate, "-l", str(path), sys.executable, "-m", "secretd.daemon", "--log-format", "json"],
        stdout=log, stderr=log,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            with Client(path, timeout=30) as client:
                status = client.status()
        except SecretdError as exc:
            raise AssertionError(f"{exc}; daemon log:\n{(tmp_short / 'act.log').read_text()}") from None
        assert status.socket == str(path)
        events = (tmp_short / "act.log").read_text()
        assert '"socket_activated": true' in events
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_ready_notification(tmp_short: Path) -> None:
    notify_path = tmp_short / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(20)
    socket_path = tmp_short / "run" / "s.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "secretd.daemon", "--socket", str(socket_path)],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        message = receiver.recv(4096).decode()
        assert "READY=1" in message.splitlines()
        assert f"STATUS=accepting connections on {socket_path}" in message
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(socket_path))  # readiness was sent only once accepting
        probe.close()
        process.terminate()
        assert "STOPPING=1" in receiver.recv(4096).decode()
    finally:
        process.terminate()
        assert process.wait(15) == 0
        receiver.close()
