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
        b"GET / HTTP/1.0\r\n\r\n",  # not msgpack-rpc at all
    ],
)
def test_malformed_input_closes_only_that_connection(daemon: Daemon, client: Client, payload: bytes) -> None:
    bad = _raw(daemon)
    bad.sendall(payload)
    notice = [msgspec.msgpack.decode(bad.recv(65536))] if payload[0] == 0x94 else _read_framed(bad)
    assert notice[0][0] == 2  # type: ignore[index]
    assert notice[0][1] == "error"  # type: ignore[index]
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


def test_value_over_masking_limit_rejected(client: Client) -> None:
    from secretd.daemon.masking import MAX_VALUE_BYTES

    huge = "Zq81" + "x" * MAX_VALUE_BYTES
    with pytest.raises(RemoteError) as error:
        client.update_secrets(None, [SecretSpec(name="HUGE", source=StaticSource(value=huge))])
    assert error.value.code == ErrorCode.INVALID_SECRET
    assert f"longer than {MAX_VALUE_BYTES} bytes" in error.value.message
    assert client.list_secrets() == []
    from secretd.client import CommandSource

    client.update_secrets(None, [SecretSpec(name="BIG_OUTPUT", source=CommandSource(
        argv=["python3", "-c", f"print('y' * {MAX_VALUE_BYTES + 1})"]))])
    result = client.resolve_env(None, "echo $BIG_OUTPUT")
    assert "the most that can be masked" in result.errors["BIG_OUTPUT"]
    assert client.mask(None, b"still works") == b"still works"


def test_unhashable_map_key_closes_only_that_connection(daemon: Daemon, client: Client) -> None:
    bad = _raw(daemon)
    # Plain msgpack-rpc [0, 1, "status", [{[1]: 1}]]: a map whose key is an array.
    bad.sendall(bytes([0x94, 0, 1, 0xA6]) + b"status" + bytes([0x91, 0x81, 0x91, 0x01, 0x01]))
    notice = msgspec.msgpack.decode(bad.recv(65536))
    assert notice[2][0]["code"] == ErrorCode.PARSE_ERROR
    assert client.status().connections >= 1
    assert daemon.process.poll() is None


def test_new_scope_never_inherits_expired_masker(client: Client) -> None:
    for round_number in range(40):
        old = client.open_scope("old", ttl=0.01)
        client.update_secrets(old, [SecretSpec(name="OLD", source=StaticSource(value=f"Zq81-old-{round_number:04d}-Xy77"))])
        client.mask(old, b"warm up")
        time.sleep(0.02)
        with pytest.raises(RemoteError):
            client.mask(old, b"x")
        new = client.open_scope("new")
        value = f"Zq81-new-{round_number:04d}-Xy77"
        client.update_secrets(new, [SecretSpec(name="NEW", source=StaticSource(value=value))])
        assert client.mask(new, f"token={value}".encode()) == b"token=<secret-hidden>"
        client.close_scope(new)


def test_stream_masks_dynamic_secret_added_after_open(client: Client, tmp_short: Path) -> None:
    token_file = tmp_short / "token"
    token_file.write_text("Zq81-file-token-Xy77\n")
    scope = client.open_scope()
    with client.stream(scope) as stream:
        from secretd.client import FileSource

        client.update_secrets(scope, [SecretSpec(name="FILE_TOKEN", source=FileSource(path=str(token_file)))])
        out = stream.feed(b"cat says: Zq81-file-token-Xy77\n")
        out += stream.close()
    assert out == b"cat says: <secret-hidden>\n"


def test_stream_closes_after_scope_ends(client: Client) -> None:
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="T", source=StaticSource(value="Zq81-stream-end-Xy77"))])
    stream_id = client.call("stream.open", scope)
    client.call("stream.feed", stream_id, b"Zq81-stream")
    client.close_scope(scope)
    with pytest.raises(RemoteError) as error:
        client.call("stream.feed", stream_id, b"-end-Xy77")
    assert error.value.code == ErrorCode.SCOPE_NOT_FOUND
    assert client.call("stream.close", stream_id) == b"Zq81-stream"
    assert client.status().streams == 0


def test_invalid_params_do_not_echo_input(client: Client) -> None:
    pasted = "Zq81-pasted-into-wrong-field-Xy77"
    calls = [
        ("scope.open", "label", None, False, pasted),
        ("secrets.update", None, [{"name": "A", "source": {"kind": "static", "value": "v" * 9}, "inject": pasted}]),
        ("secrets.update", None, [{"name": "A", "source": {"kind": pasted, "value": "v" * 9}}]),
        ("secrets.update", None, [{"name": "A", "source": {"kind": "static", "value": "v" * 9, pasted: 1}}]),
    ]
    for method, *params in calls:
        with pytest.raises(RemoteError) as error:
            client.call(method, *params)
        assert error.value.code == ErrorCode.INVALID_PARAMS
        assert pasted not in error.value.message


def test_hung_global_source_stalls_mask_once(tmp_short: Path) -> None:
    config = '[secrets.HANGS]\nsource = { kind = "command", argv = ["sleep", "30"], timeout = 1 }\n'
    daemon = start_daemon(tmp_short, config=config)
    try:
        with daemon.client() as client:
            durations = []
            for _ in range(4):
                started = time.monotonic()
                assert client.mask(None, b"plain") == b"plain"
                durations.append(time.monotonic() - started)
                time.sleep(0.6)
            assert durations[0] >= 0.9
            assert max(durations[1:]) < 0.5
    finally:
        assert daemon.stop() == 0


def test_config_with_value_over_limit_rejected(tmp_short: Path) -> None:
    from secretd.daemon.masking import MAX_VALUE_BYTES

    config = f'[secrets.HUGE]\nsource = {{ kind = "static", value = "{"x" * (MAX_VALUE_BYTES + 1)}" }}\n'
    (tmp_short / "config.toml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "secretd.daemon", "--socket", str(tmp_short / "run" / "s.sock"),
         "--config", str(tmp_short / "config.toml")],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "$.secrets.HUGE is longer than" in result.stderr


def test_masker_build_logged_once(daemon: Daemon, client: Client) -> None:
    value = "Zq81-masker-log-value-Xy77"
    client.update_secrets(None, [SecretSpec(name="LOGGED", source=StaticSource(value=value))])
    assert client.mask(None, f"a {value} b".encode()) == b"a <secret-hidden> b"
    assert client.mask(None, b"again") == b"again"
    events = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    built = [event for event in events if event["event"] == "masker.built"]
    assert len(built) == 1
    assert built[0]["values"] == 1
    assert built[0]["patterns"] > 0
    assert value not in daemon.log_text()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def test_announced_large_frames_cost_no_memory(daemon: Daemon, client: Client) -> None:
    # Each connection announces a frame just under max_message_size (32 MiB) and sends one byte of it.
    before = _rss_kib(daemon.process.pid)
    peers = []
    for _ in range(20):
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(str(daemon.socket_path))
        peer.sendall((32 * 1024 * 1024 - 1).to_bytes(4, "big") + b"\x94")
        peers.append(peer)
    try:
        assert client.mask(None, b"still served") == b"still served"
        grown = _rss_kib(daemon.process.pid) - before
        assert grown < 64 * 1024, f"the daemon grew by {grown} KiB for 20 announced frames"
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.slow
def test_masker_build_does_not_block_others(daemon: Daemon, client: Client) -> None:
    # 10 000 secrets take about a second to compile: meanwhile another connection is served.
    scope = client.open_scope("big")
    specs = [SecretSpec(name=f"BIG_{index:05d}", source=StaticSource(value=f"Zq81-{index:05d}-big-scope-value-Xy77"))
             for index in range(10_000)]
    client.update_secrets(scope, specs)
    finished: list[str] = []

    def mask_big() -> None:
        with daemon.client() as big:
            assert big.mask(scope, b"x Zq81-00042-big-scope-value-Xy77 y") == b"x <secret-hidden> y"
        finished.append("big scope")

    worker = threading.Thread(target=mask_big)
    worker.start()
    time.sleep(0.3)  # the big scope's request has arrived and its build has begun
    assert worker.is_alive(), "the build ended too soon to show anything"
    with daemon.client() as other:
        assert other.mask(None, b"small") == b"small"
    finished.append("global scope")
    worker.join(60)
    assert finished == ["global scope", "big scope"]


def test_status_and_start_log_name_masker_path(daemon: Daemon, client: Client) -> None:
    from secretd.daemon.masking import escapes

    assert client.status().masker_accelerated is escapes.ACCELERATED
    started = [json.loads(line) for line in daemon.log_text().splitlines() if '"daemon.started"' in line]
    assert started[0]["masker"] == ("C module" if escapes.ACCELERATED else "pure Python")


def test_daemon_without_c_module_warns(tmp_short: Path) -> None:
    # The daemon imports the masker without the compiled module when Python cannot import it.
    blocker = tmp_short / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'secretd.daemon.masking._scan':\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    daemon = start_daemon(tmp_short, env={"PYTHONPATH": str(blocker)})
    try:
        with daemon.client() as client:
            assert client.status().masker_accelerated is False
            assert client.mask(None, b"x\x1b[31my") == b"x\x1b[31my"
        assert '"masker.slow_path"' in daemon.log_text()
    finally:
        daemon.stop()


def test_daemon_keeps_freed_memory_on_glibc(daemon: Daemon) -> None:
    import platform

    events = [json.loads(line) for line in daemon.log_text().splitlines() if '"daemon.memory"' in line]
    assert len(events) == 1
    if platform.libc_ver()[0] == "glibc":
        assert events[0]["freed_memory_kept"] is True


def test_malloc_environment_left_to_glibc(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, env={"MALLOC_TRIM_THRESHOLD_": "1048576"})
    try:
        events = [json.loads(line) for line in daemon.log_text().splitlines() if '"daemon.memory"' in line]
        assert events[0]["freed_memory_kept"] is False
    finally:
        daemon.stop()
