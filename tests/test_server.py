"""The daemon under bad input, limits, other users and shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from secretd.client import Client, RemoteError, SecretSpec, StaticSource, TransportError
from secretd.protocol.errors import ErrorCode
from secretd.protocol.framing import FrameDecoder, encode_frame

from .conftest import Daemon, start_daemon

VALUE = "Zq81-server-test-value-Xy77"


_opened: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_raw_sockets() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _raw(daemon: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    _opened.append(sock)
    sock.settimeout(10)
    sock.connect(os.fspath(daemon.socket_path))
    return sock


def _read_framed(sock: socket.socket) -> list[object]:
    decoder = FrameDecoder(1 << 26)
    while True:
        data = sock.recv(65536)
        if not data:
            raise EOFError
        bodies = decoder.feed(data)
        if bodies:
            return [msgspec.msgpack.decode(b) for b in bodies]


def _closed(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_socket_and_directory_modes(daemon: Daemon) -> None:
    assert stat.S_IMODE(daemon.socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.socket_path.parent.stat().st_mode) == 0o700


def test_refuses_directory_writable_by_others(tmp_short: Path) -> None:
    run = tmp_short / "run"
    run.mkdir()
    run.chmod(0o777)
    result = subprocess.run(
        [sys.executable, "-m", "secretd.daemon", "--socket", str(run / "s.sock")],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert str(run) in result.stderr
    assert "writable by other users" in result.stderr


def test_refuses_directory_owned_by_another_user(tmp_short: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    run = tmp_short / "run"
    run.mkdir(mode=0o700)
    os.chown(run, 65534, 65534)
    result = subprocess.run(
        [sys.executable, "-m", "secretd.daemon", "--socket", str(run / "s.sock")],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "owned by uid 65534" in result.stderr
    assert str(run) in result.stderr


def test_second_daemon_on_live_socket_rejected(daemon: Daemon) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "secretd.daemon", "--socket", str(daemon.socket_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "already listening" in result.stderr


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",  # framed, invalid msgpack
        b"\x00\x00\x00\x02\x91\x01",  # framed, not a msgpack-rpc message
        b"\x94\x00\x01\xc1",  # unframed, invalid msgpack
        b"\x00\x00\x00\x00",  # empty frame
    ],
)
def test_malformed_input_closes_only_that_connection(daemon: Daemon, client: Client, payload: bytes) -> None:
    bad = _raw(daemon)
    bad.sendall(payload)
    notice = _read_framed(bad) if payload[0] == 0 else [msgspec.msgpack.decode(bad.recv(65536))]
    assert notice[0][0] == 2 and notice[0][1] == "error"  # type: ignore[index]
    assert notice[0][2][0]["code"] == ErrorCode.PARSE_ERROR  # type: ignore[index]
    assert _closed(bad)
    assert client.status().connections >= 1


def test_deeply_nested_input_rejected(daemon: Daemon, client: Client) -> None:
    bad = _raw(daemon)
    body = b"\x94\x00\x01\xa4mask" + b"\x91" * 200_000 + b"\xc0"
    bad.sendall(len(body).to_bytes(4, "big") + body)
    notice = _read_framed(bad)
    assert notice[0][2][0]["code"] == ErrorCode.PARSE_ERROR  # type: ignore[index]
    assert client.mask(None, b"still serving") == b"still serving"


def test_oversized_message_rejected_before_body(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config="[daemon]\nmax_message_size = 4096\n")
    try:
        bad = _raw(daemon)
        bad.sendall((1 << 30).to_bytes(4, "big"))  # the header only: no body is ever sent
        notice = _read_framed(bad)
        assert notice[0][2][0]["code"] == ErrorCode.MESSAGE_TOO_LARGE  # type: ignore[index]
        assert "maximum of 4096 bytes" in notice[0][2][0]["message"]  # type: ignore[index]
        with daemon.client() as good:
            assert good.mask(None, b"x" * 1000) == b"x" * 1000
    finally:
        assert daemon.stop() == 0


def test_unknown_method_and_invalid_params_keep_connection(client: Client) -> None:
    with pytest.raises(RemoteError) as unknown:
        client.call("no.such.method")
    assert unknown.value.code == ErrorCode.METHOD_NOT_FOUND
    with pytest.raises(RemoteError) as invalid:
        client.call("mask", None, 12)
    assert invalid.value.code == ErrorCode.INVALID_PARAMS
    assert "invalid params for 'mask'" in invalid.value.message
    assert client.mask(None, b"ok") == b"ok"


def test_invalid_secret_name_rejected(client: Client) -> None:
    with pytest.raises(RemoteError) as error:
        client.call("secrets.update", None, [{"name": "bad name", "source": {"kind": "static", "value": VALUE}}])
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert VALUE not in str(error.value)
    assert client.list_secrets() == []


def test_connection_limit(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config="[daemon]\nmax_connections = 2\n")
    try:
        first, second = daemon.client(), daemon.client()
        with pytest.raises(TransportError, match="too many connections"):
            daemon.client().close()
        first.close()
        time.sleep(0.2)
        with daemon.client() as third:
            assert third.status().connections == 2
        second.close()
    finally:
        assert daemon.stop() == 0


def test_idle_half_sent_message_times_out(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config="[daemon]\nidle_timeout = 0.5\n")
    try:
        bad = _raw(daemon)
        bad.sendall(b"\x00\x00\x01\x00abc")  # announces 256 bytes, sends 3
        notice = _read_framed(bad)
        assert "incomplete message" in notice[0][2][0]["message"]  # type: ignore[index]
    finally:
        assert daemon.stop() == 0


def test_peer_of_another_uid_rejected(daemon: Daemon) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another uid")
    daemon.directory.chmod(0o711)
    daemon.socket_path.parent.chmod(0o711)
    daemon.socket_path.chmod(0o666)
    code = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "try:\n    s.sendall(b'\\x00\\x00\\x00\\x01\\xc0')\n    print(s.recv(100) == b'')\n"
        "except (ConnectionResetError, BrokenPipeError):\n    print(True)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(daemon.socket_path)],
                           capture_output=True, text=True, timeout=30)
    assert child.stdout.strip() == "True", child.stderr
    events = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    rejected = [e for e in events if e["event"] == "connection.rejected"]
    assert rejected and rejected[0]["peer_uid"] == 65534
    assert rejected[0]["peer_pid"] > 0


def test_sigterm_lets_inflight_request_finish(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short)
    script = tmp_short / "slow.sh"
    script.write_text("#!/bin/sh\nsleep 1\necho Zq81-slow-value-Xy77\n")
    script.chmod(0o700)
    with daemon.client() as client:
        from secretd.client import CommandSource

        client.update_secrets(None, [SecretSpec(name="SLOW", source=CommandSource(argv=[str(script)]))])
        result: dict[str, object] = {}

        def resolve() -> None:
            result["env"] = client.resolve_env(None, "echo $SLOW").env

        worker = threading.Thread(target=resolve)
        worker.start()
        time.sleep(0.3)
        daemon.process.send_signal(signal.SIGTERM)
        worker.join(15)
    assert result["env"] == {"SLOW": "Zq81-slow-value-Xy77"}
    assert daemon.process.wait(15) == 0
    assert not daemon.socket_path.exists()
