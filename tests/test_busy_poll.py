"""Busy polling for chunk round trips: the daemon's ``busy_poll_us``, the blocking client's, the echo server's.

No test here measures speed.  The strace tests count the ``recvfrom`` calls
that fail with EAGAIN.  A process that waits for readiness makes almost none,
and one that polls makes one or more in each gap that outlasts its first try.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.contenders import EchoClient
from bench.processes import start_echo_server
from secretd.client import Client, RemoteError, SecretSpec, StaticSource
from secretd.daemon.config import DaemonSettings
from secretd.protocol.errors import ErrorCode

from .conftest import REPO, Daemon, start_daemon, wait_for_socket

TOKEN = "ghp_Zq81Xy77Lm44Kj22Hg00Fd99"
CHUNK = 8 * 1024
#: Chunks fed one at a time in the strace tests.
FEEDS = 100
#: Seconds between two of those feeds: 2 ms, far longer than the daemon's 50 µs poll.
GAP = 0.002
#: Seconds the threads of the two-connection tests may take: far more than they need, so they fail on a hang only.
DEADLINE = 30.0


def _output_with_token(size: int) -> bytes:
    """Return `size` bytes of log lines, some carrying the token, several across 8 KiB boundaries."""
    lines = []
    length = 0
    number = 0
    while length < size:
        secret = f" token={TOKEN}" if number % 37 == 0 else ""
        lines.append(f"line {number:06d}: building target {number % 91}{secret}\n".encode())
        length += len(lines[-1])
        number += 1
    return b"".join(lines)[:size]


def _feed_one_at_a_time(client: Client, scope: str | None, data: bytes) -> bytes:
    pieces = []
    with client.stream(scope) as stream:
        for offset in range(0, len(data), CHUNK):
            pieces.append(stream.feed(data[offset : offset + CHUNK]))
        pieces.append(stream.close())
    return b"".join(pieces)


def _run_within(deadline: float, *work: Callable[[], None]) -> None:
    """Run each of `work` in its own thread, and fail if one raises or they outlast `deadline` seconds."""
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in work]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(end - time.monotonic(), 0))
    assert not any(thread.is_alive() for thread in threads), f"requests still running after {deadline} s"
    if errors:
        raise errors[0]


def _strace_or_skip() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    return strace


@contextmanager
def _traced_recvfrom(pid: int, directory: Path, name: str) -> Iterator[Path]:
    """Trace the ``recvfrom`` calls of a running process into ``name``.txt; skip if strace cannot attach."""
    strace = _strace_or_skip()
    trace = directory / f"{name}.txt"
    messages = directory / f"{name}.err"
    with open(messages, "wb") as stderr:
        tracer = subprocess.Popen(
            [strace, "-f", "-e", "trace=recvfrom", "-o", str(trace), "-p", str(pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 15
        while "attached" not in messages.read_text(errors="replace"):
            if tracer.poll() is not None:
                pytest.skip(f"strace cannot attach to process {pid} here (ptrace restricted?): "
                            f"{messages.read_text(errors='replace').strip()[-300:]}")
            assert time.monotonic() < deadline, "strace did not attach within 15 s"
            time.sleep(0.01)
        yield trace
    finally:
        if tracer.poll() is None:
            os.kill(tracer.pid, signal.SIGINT)
        tracer.wait(15)


def _eagain_count(trace: Path) -> int:
    return sum(1 for line in trace.read_text(errors="replace").splitlines()
               if "recvfrom(" in line and "= -1 EAGAIN" in line)


# The daemon.


def test_default_setting_is_50_microseconds() -> None:
    assert DaemonSettings().busy_poll_us == 50


def test_stream_matches_mask_with_polling(client: Client) -> None:
    client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
    data = _output_with_token(300 * 1024)
    assert data.count(TOKEN.encode()) > 50

    streamed = _feed_one_at_a_time(client, None, data)

    assert TOKEN.encode() not in streamed
    assert streamed == client.mask(None, data)


def test_stream_matches_mask_without_polling(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config="[daemon]\nbusy_poll_us = 0\n")
    try:
        with daemon.client(busy_poll_us=0) as client:
            client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
            data = _output_with_token(100 * 1024)

            streamed = _feed_one_at_a_time(client, None, data)

            assert TOKEN.encode() not in streamed
            assert streamed == client.mask(None, data)
            assert client.status().connections == 1
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def slow_poller(tmp_short: Path) -> Iterator[Daemon]:
    """A daemon that polls for the longest time allowed, 1000 µs, after each chunk."""
    daemon = start_daemon(tmp_short, config="[daemon]\nbusy_poll_us = 1000\n")
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-4000:]


def test_other_connection_served_between_feeds(slow_poller: Daemon) -> None:
    with slow_poller.client(timeout=DEADLINE) as feeder, slow_poller.client(timeout=DEADLINE) as other:
        feeder.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
        line = f"deploy with {TOKEN}\n".encode()
        answered = []

        def interleave() -> None:
            with feeder.stream(None) as stream:
                for _ in range(300):
                    # The daemon now polls the feeder's socket while the other request arrives.
                    stream.feed(b"x" * CHUNK)
                    answered.append(other.mask(None, line))
                    answered.append(other.status().connections)

        _run_within(DEADLINE, interleave)

        assert len(answered) == 600
        assert answered[0::2] == [b"deploy with <secret-hidden>\n"] * 300
        assert answered[1::2] == [2] * 300


def test_other_connection_served_during_feeds(slow_poller: Daemon) -> None:
    with slow_poller.client(timeout=DEADLINE) as feeder, slow_poller.client(timeout=DEADLINE) as other:
        feeder.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
        data = _output_with_token(2 << 20)
        line = f"deploy with {TOKEN}\n".encode()
        streamed: list[bytes] = []
        masked: list[bytes] = []

        def feed() -> None:
            streamed.append(_feed_one_at_a_time(feeder, None, data))

        def ask() -> None:
            for _ in range(500):
                masked.append(other.mask(None, line))

        _run_within(DEADLINE, feed, ask)

        assert masked == [b"deploy with <secret-hidden>\n"] * 500
        assert streamed == [feeder.mask(None, data)]


def test_setting_out_of_range_rejected_at_start(tmp_short: Path) -> None:
    config = tmp_short / "config.toml"
    for value, expected in (("-1", "expected `int` >= 0"), ("1001", "expected `int` <= 1000"),
                            ("2.5", "expected `int`, got `float`")):
        config.write_text(f"[daemon]\nbusy_poll_us = {value}\n")
        result = subprocess.run(
            [sys.executable, "-m", "secretd.daemon", "--socket", str(tmp_short / "s.sock"), "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert f"$.daemon.busy_poll_us: {expected}" in result.stderr


def test_setting_reload_applies_and_rejects(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config="[daemon]\nbusy_poll_us = 50\n")
    config = tmp_short / "config.toml"
    try:
        with daemon.client() as client:
            client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
            data = _output_with_token(64 * 1024)
            with client.stream(None) as stream:
                first = stream.feed(data[:CHUNK])

                config.write_text("[daemon]\nbusy_poll_us = 0\n")
                assert client.reload() == {"secrets": 0, "settings_changed": ["busy_poll_us"]}

                config.write_text("[daemon]\nbusy_poll_us = 5000\n")
                with pytest.raises(RemoteError, match=r"\$\.daemon\.busy_poll_us: expected `int` <= 1000") as error:
                    client.reload()
                assert error.value.code == ErrorCode.CONFIG_INVALID
                assert "running config is kept" in str(error.value)

                rest = [stream.feed(data[offset : offset + CHUNK]) for offset in range(CHUNK, len(data), CHUNK)]
                rest.append(stream.close())
            assert first + b"".join(rest) == client.mask(None, data)
    finally:
        assert daemon.stop() == 0


def test_daemon_polls_after_chunks_only(tmp_short: Path) -> None:
    _strace_or_skip()
    daemon = start_daemon(tmp_short, "--log-level", "warning")
    try:
        with daemon.client(busy_poll_us=0) as client:
            with _traced_recvfrom(daemon.process.pid, tmp_short, "status") as status_trace:
                for _ in range(FEEDS):
                    client.status()
                    time.sleep(GAP)
            with client.stream(None) as stream:
                with _traced_recvfrom(daemon.process.pid, tmp_short, "feeds") as feed_trace:
                    for _ in range(FEEDS):
                        stream.feed(b"y" * CHUNK)
                        # A gap longer than the poll, so that each poll ends with failed tries
                        # however fast the traced daemon and this client are.
                        time.sleep(GAP)
                # Attaching takes far longer than the poll after the last feed, so an idle
                # connection makes no more tries from here on.
                with _traced_recvfrom(daemon.process.pid, tmp_short, "idle") as idle_trace:
                    time.sleep(0.5)
        after_status = _eagain_count(status_trace)
        after_feeds = _eagain_count(feed_trace)
        while_idle = _eagain_count(idle_trace)
    finally:
        assert daemon.stop() == 0

    assert after_status < FEEDS // 10, f"{after_status} recvfrom calls failed with EAGAIN after status requests"
    assert after_feeds >= FEEDS // 4, f"only {after_feeds} recvfrom calls failed with EAGAIN after {FEEDS} feeds"
    assert while_idle == 0, f"{while_idle} recvfrom calls failed with EAGAIN on an idle connection"


def test_daemon_does_not_poll_when_disabled(tmp_short: Path) -> None:
    _strace_or_skip()
    daemon = start_daemon(tmp_short, "--log-level", "warning", config="[daemon]\nbusy_poll_us = 0\n")
    try:
        with daemon.client(busy_poll_us=0) as client:
            with _traced_recvfrom(daemon.process.pid, tmp_short, "feeds") as trace:
                with client.stream(None) as stream:
                    for _ in range(FEEDS):
                        stream.feed(b"y" * CHUNK)
                        time.sleep(GAP)
        failed = _eagain_count(trace)
    finally:
        assert daemon.stop() == 0

    assert failed < FEEDS // 10, f"{failed} recvfrom calls failed with EAGAIN with busy_poll_us = 0"


def test_polling_on_trio_backend(tmp_short: Path) -> None:
    pytest.importorskip("trio")
    socket_path = tmp_short / "run" / "secretd.sock"
    config = tmp_short / "config.toml"
    config.write_text("[daemon]\nbusy_poll_us = 1000\n")
    script = textwrap.dedent("""
        import sys
        from pathlib import Path

        import anyio

        from secretd.daemon.config import load_config
        from secretd.daemon.server import Server

        config_path = Path(sys.argv[2])
        server = Server(load_config(config_path, required=True), Path(sys.argv[1]), config_path, config_required=True)
        anyio.run(server.run, backend="trio")
    """)
    with open(tmp_short / "trio.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", script, str(socket_path), str(config)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_for_socket(socket_path, process)
        with Client(socket_path, timeout=DEADLINE) as feeder, Client(socket_path, timeout=DEADLINE) as other:
            feeder.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
            data = _output_with_token(256 * 1024)
            streamed: list[bytes] = []
            statuses: list[int] = []

            def feed() -> None:
                streamed.append(_feed_one_at_a_time(feeder, None, data))

            def ask() -> None:
                for _ in range(200):
                    statuses.append(other.status().connections)

            _run_within(DEADLINE, feed, ask)

            assert statuses == [2] * 200
            assert streamed == [feeder.mask(None, data)]
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(15)
    assert status == 0, (tmp_short / "trio.log").read_text(errors="replace")[-4000:]


# The blocking client.


@pytest.mark.parametrize("value", [-1, 1001, 10**12, True, 1.5, "200", None])
def test_client_rejects_invalid_busy_poll(value: object) -> None:
    with pytest.raises(ValueError, match=r"busy_poll_us must be an int from 0 to 1000 \(microseconds\)"):
        Client("/nonexistent/secretd.sock", busy_poll_us=value)  # type: ignore[arg-type]


def test_client_default_busy_poll(client: Client) -> None:
    assert client.busy_poll_us == 200


def test_client_without_polling(daemon: Daemon) -> None:
    with daemon.client(busy_poll_us=0) as client:
        client.update_secrets(None, [SecretSpec(name="TOKEN", source=StaticSource(value=TOKEN))])
        data = _output_with_token(100 * 1024)

        assert client.busy_poll_us == 0
        assert _feed_one_at_a_time(client, None, data) == client.mask(None, data)
        with client.stream(None, pipeline=4) as stream:
            pipelined = b"".join(stream.feed(data[o : o + CHUNK]) for o in range(0, len(data), CHUNK))
            pipelined += stream.close()
        assert pipelined == client.mask(None, data)


_TRACED_CLIENT = textwrap.dedent("""
    import os
    import sys

    from secretd.client import Client

    socket_path, busy_poll_us, feeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with Client(socket_path, busy_poll_us=busy_poll_us) as client:
        for _ in range(feeds):
            client.status()
        os.getppid()  # marks the end of the status requests in the trace
        with client.stream(None) as stream:
            for _ in range(feeds):
                assert stream.feed(b"z" * 8192 + b"\\n") == b"z" * 8192 + b"\\n"
""")


@pytest.mark.parametrize("busy_poll_us", [200, 0])
def test_client_polls_for_chunk_responses(daemon: Daemon, tmp_short: Path, busy_poll_us: int) -> None:
    strace = _strace_or_skip()
    trace = tmp_short / "client-strace.txt"
    result = subprocess.run(
        [strace, "-f", "-e", "trace=recvfrom,getppid", "-o", str(trace),
         sys.executable, "-c", _TRACED_CLIENT, str(daemon.socket_path), str(busy_poll_us), str(FEEDS)],
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0 and not trace.exists():
        pytest.skip(f"strace cannot run the client here (ptrace restricted?): {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr[-4000:]

    # Each poll starts with a receive with MSG_DONTWAIT, whether or not the response is there yet.
    calls = trace.read_text(errors="replace").splitlines()
    marker = next(index for index, line in enumerate(calls) if "getppid(" in line)
    status_polls = sum(1 for line in calls[:marker] if "recvfrom(" in line and "MSG_DONTWAIT" in line)
    feed_polls = sum(1 for line in calls[marker:] if "recvfrom(" in line and "MSG_DONTWAIT" in line)
    assert status_polls == 0, f"{status_polls} recvfrom calls with MSG_DONTWAIT for status requests"
    if busy_poll_us:
        assert feed_polls >= FEEDS, f"only {feed_polls} recvfrom calls with MSG_DONTWAIT for {FEEDS} feeds"
    else:
        assert feed_polls == 0, f"{feed_polls} recvfrom calls with MSG_DONTWAIT with busy_poll_us = 0"


# The benchmark's echo server and client.


@pytest.mark.parametrize(("server_us", "client_us"), [(None, 200), (1000, 0), (0, 200)])
def test_echo_server_echoes_exactly(tmp_short: Path, server_us: int | None, client_us: int) -> None:
    server = start_echo_server(tmp_short, busy_poll_us=server_us)
    try:
        client = EchoClient(server.socket_path, busy_poll_us=client_us)
        try:
            for size in (0, 1, 4, 5, CHUNK, 64 * 1024 + 1, 3 << 20):
                data = os.urandom(size)
                assert client.round_trip(data) == data, f"{size} bytes echoed differently"
            chunks = [os.urandom(CHUNK) for _ in range(200)]
            assert [client.round_trip(chunk) for chunk in chunks] == chunks
        finally:
            client.close()
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


def test_echo_server_rejects_negative_poll(tmp_short: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "echo_server.py"), "--busy-poll-us", "-1", str(tmp_short / "e.sock")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--busy-poll-us: invalid value '-1': expected an integer of at least 0" in result.stderr


def test_echo_client_rejects_negative_poll(tmp_short: Path) -> None:
    with pytest.raises(ValueError, match="busy_poll_us must be at least 0"):
        EchoClient(tmp_short / "e.sock", busy_poll_us=-1)


@pytest.mark.parametrize("server_us", [None, 0])
def test_echo_server_polls_between_frames(tmp_short: Path, server_us: int | None) -> None:
    _strace_or_skip()
    server = start_echo_server(tmp_short, busy_poll_us=server_us)
    try:
        client = EchoClient(server.socket_path, busy_poll_us=0)
        try:
            with _traced_recvfrom(server.pid, tmp_short, "echo") as trace:
                for _ in range(FEEDS):
                    assert client.round_trip(b"e" * CHUNK) == b"e" * CHUNK
        finally:
            client.close()
    finally:
        server.stop()

    # After each frame but the last, the next header is first received with MSG_DONTWAIT.
    calls = trace.read_text(errors="replace").splitlines()
    polls = sum(1 for line in calls if "recvfrom(" in line and "MSG_DONTWAIT" in line)
    if server_us is None:
        assert polls >= FEEDS - 1, f"only {polls} recvfrom calls with MSG_DONTWAIT for {FEEDS} frames"
    else:
        assert polls == 0, f"{polls} recvfrom calls with MSG_DONTWAIT with --busy-poll-us 0"
