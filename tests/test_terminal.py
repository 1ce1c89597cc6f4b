"""Commands run in real bash with secrets in their environment and masked output."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from secretd.client import terminal

from secretd.client import (
    Client,
    CommandSource,
    Conversation,
    MaskingUnavailable,
    SecretSpec,
    StaticSource,
    run_command,
)

from .conftest import Daemon, start_daemon

TOKEN = "ghp_Zq81Xy77Lm44Kj22Hg00Fd99Ab"


@pytest.fixture
def scope(client: Client) -> str:
    scope = client.open_scope("terminal")
    client.update_secrets(scope, [SecretSpec(name="GITHUB_TOKEN", source=StaticSource(value=TOKEN))])
    return scope


def test_referenced_secret_reaches_command(client: Client, scope: str) -> None:
    result = run_command(client, scope, 'test "$GITHUB_TOKEN" = ' + TOKEN + ' && echo match')
    assert result.exit_code == 0
    assert result.stdout == b"match\n"
    assert result.injected == ["GITHUB_TOKEN"]


def test_unreferenced_secret_not_in_environment(client: Client, scope: str) -> None:
    result = run_command(client, scope, "env | grep -c GITHUB || true")
    assert result.stdout == b"0\n"


def test_printed_values_are_masked(client: Client, scope: str) -> None:
    command = (
        'echo "$GITHUB_TOKEN"; env | grep GITHUB_TOKEN; '
        'echo "https://x-access-token:$GITHUB_TOKEN@github.com/acme/app.git"; '
        'echo "$GITHUB_TOKEN" >&2'
    )
    result = run_command(client, scope, command)
    assert TOKEN.encode() not in result.stdout + result.stderr
    assert result.stdout == (
        b"<secret-hidden>\nGITHUB_TOKEN=<secret-hidden>\n"
        b"https://x-access-token:<secret-hidden>@github.com/acme/app.git\n"
    )
    assert result.stderr == b"<secret-hidden>\n"


def test_value_split_across_writes_is_masked(client: Client, scope: str) -> None:
    half = len(TOKEN) // 2
    command = f'printf "%s" "${{GITHUB_TOKEN:0:{half}}}"; sleep 0.3; printf "%s done\\n" "${{GITHUB_TOKEN:{half}}}"'
    seen: list[bytes] = []
    result = run_command(client, scope, command, on_output=lambda name, data: seen.append(data))
    assert result.stdout == b"<secret-hidden> done\n"
    assert TOKEN[:half].encode() not in b"".join(seen)


def test_output_released_while_command_runs(client: Client, scope: str) -> None:
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    run_command(client, scope, "echo first; sleep 1; echo second",
                on_output=lambda name, data: arrivals.append((time.monotonic() - started, data)))
    assert arrivals[0][1] == b"first\n"
    assert arrivals[0][0] < 0.9


def test_exit_status_returned(client: Client, scope: str) -> None:
    assert run_command(client, scope, "exit 7").exit_code == 7


def test_timeout_kills_command(client: Client, scope: str) -> None:
    result = run_command(client, scope, "echo begin; sleep 30", timeout=0.5)
    assert result.timed_out
    assert result.stdout == b"begin\n"


def test_daemon_gone_mid_command_withholds_output(tmp_short) -> None:  # type: ignore[no-untyped-def]
    daemon = start_daemon(tmp_short)
    client = daemon.client()
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="GITHUB_TOKEN", source=StaticSource(value=TOKEN))])
    seen: list[bytes] = []
    killer = threading.Timer(0.5, daemon.process.kill)
    killer.start()
    with pytest.raises(MaskingUnavailable, match="withheld"):
        run_command(client, scope, 'echo start; sleep 1.5; echo "$GITHUB_TOKEN"; sleep 0.5; echo end',
                    on_output=lambda name, data: seen.append(data))
    assert TOKEN.encode() not in b"".join(seen)
    daemon.process.wait(10)


def test_command_source_value_masked(daemon: Daemon, client: Client, tmp_short) -> None:  # type: ignore[no-untyped-def]
    script = tmp_short / "token.sh"
    script.write_text("#!/bin/sh\necho Zq81-script-token-Xy77\n")
    script.chmod(0o700)
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="SCRIPT_TOKEN", source=CommandSource(argv=[str(script)]))])
    result = run_command(client, scope, 'echo "token is $SCRIPT_TOKEN"')
    assert result.stdout == b"token is <secret-hidden>\n"


async def test_async_run_command_masks(daemon: Daemon) -> None:
    from secretd.client import AsyncClient, arun_command

    async with AsyncClient.connect(daemon.socket_path) as client:
        scope = await client.open_scope()
        await client.update_secrets(scope, [SecretSpec(name="GITHUB_TOKEN", source=StaticSource(value=TOKEN))])
        seen: list[bytes] = []
        result = await arun_command(
            client, scope, 'printf "%s" "${GITHUB_TOKEN:0:9}"; sleep 0.2; echo "${GITHUB_TOKEN:9} ok"; exit 4',
            on_output=lambda name, data: seen.append(data),
        )
        assert result.exit_code == 4
        assert result.stdout == b"<secret-hidden> ok\n"
        assert TOKEN[:9].encode() not in b"".join(seen)
        timed = await arun_command(client, scope, "echo a; sleep 20", timeout=0.5)
        assert timed.timed_out
        assert timed.stdout == b"a\n"


def test_long_output_masked_through_pipeline(client: Client, scope: str) -> None:
    # Far more reads than feeds in flight, so the stream's pipeline fills and empties many times.
    command = 'for i in $(seq 1 20000); do echo "line $i $GITHUB_TOKEN"; done'
    result = run_command(client, scope, command)
    expected = b"".join(b"line %d <secret-hidden>\n" % index for index in range(1, 20001))
    assert result.stdout == expected


def test_output_in_flight_shown_when_command_pauses(client: Client, scope: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The command writes a burst, then waits until the caller has seen all of it.
    flag = tmp_path / "seen"
    command = f'for i in $(seq 1 300); do echo "burst $i"; done; while [ ! -e {flag} ]; do sleep 0.02; done; echo after'
    seen: list[bytes] = []

    def on_output(name: str, data: bytes) -> None:
        seen.append(data)
        if b"burst 300\n" in b"".join(seen):
            flag.touch()

    result = run_command(client, scope, command, timeout=20, on_output=on_output)
    assert not result.timed_out
    assert result.stdout.endswith(b"burst 300\nafter\n")


def test_stdin_is_devnull_by_default(client: Client, scope: str, tmp_short: Path) -> None:
    assert run_command(client, scope, "cat", timeout=10).stdout == b""

    data = tmp_short / "body.json"
    data.write_text(f'{{"token": "{TOKEN}"}}\n')
    with open(data, "rb") as body:
        result = run_command(client, scope, "cat", stdin=body, timeout=10)
    assert result.stdout == b'{"token": "<secret-hidden>"}\n'


def test_stdin_pipe_rejected(client: Client, scope: str) -> None:
    with pytest.raises(ValueError, match="nothing writes to the pipe"):
        run_command(client, scope, "cat", stdin=subprocess.PIPE)


def test_conversation_run_stdin(daemon: Daemon, tmp_short: Path) -> None:
    conversation = Conversation(daemon.client(), label="stdin")
    try:
        assert conversation.run("cat", timeout=10).stdout == b""
        data = tmp_short / "input"
        data.write_text("from a file\n")
        with open(data, "rb") as source:
            assert conversation.run("cat", stdin=source, timeout=10).stdout == b"from a file\n"
    finally:
        conversation.close()
        conversation.client.close()


def test_resolved_env_used_as_given(client: Client, scope: str) -> None:
    from secretd.protocol.messages import EnvResult

    preresolved = EnvResult(env={"GITHUB_TOKEN": TOKEN}, errors={"OTHER": "source failed"})
    result = run_command(client, scope, 'test "$GITHUB_TOKEN" = ' + TOKEN + ' && echo match', resolved=preresolved)
    assert result.stdout == b"match\n"
    assert result.errors == {"OTHER": "source failed"}


def test_forwarded_sigterm_then_kill(client: Client, scope: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A no-op handler keeps this test process alive if the signal were not forwarded.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        monkeypatch.setattr(terminal, "_TERM_GRACE", 0.5)

        def on_output(name: str, data: bytes) -> None:
            if b"ready" in data:
                os.kill(os.getpid(), signal.SIGTERM)

        started = time.monotonic()
        # The program ignores SIGTERM, so only the kill after the grace period ends it.
        result = run_command(client, scope, "trap '' TERM; echo ready; sleep 30; echo late",
                             timeout=15, forward_signals=True, on_output=on_output)
        assert not result.timed_out
        assert result.exit_code == -signal.SIGKILL
        assert result.stdout == b"ready\n"
        assert time.monotonic() - started < 10
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_forwarded_sigint_ends_command(client: Client, scope: str) -> None:
    def on_output(name: str, data: bytes) -> None:
        if b"ready" in data:
            os.kill(os.getpid(), signal.SIGINT)

    result = run_command(client, scope, "echo ready; exec sleep 30", timeout=15, forward_signals=True,
                         on_output=on_output)
    assert not result.timed_out
    assert result.exit_code == -signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_failed_command_closes_its_streams(client: Client, scope: str) -> None:
    def stop_reading(name: str, data: bytes) -> None:
        raise RuntimeError("the agent stopped reading")

    with pytest.raises(RuntimeError, match="stopped reading"):
        run_command(client, scope, 'for i in $(seq 1 2000); do echo "line $i $GITHUB_TOKEN"; done', on_output=stop_reading)
    # Both streams are closed in the daemon, and the connection goes on serving.
    assert client.status().streams == 0
    assert run_command(client, scope, 'echo "$GITHUB_TOKEN"').stdout == b"<secret-hidden>\n"


def test_timeout_with_output_never_pausing(client: Client, scope: str) -> None:
    # Both pipes always have output waiting, so the selector never waits; the command ends itself after 3 s.
    started = time.monotonic()
    result = run_command(client, scope, 'yes "$GITHUB_TOKEN" >&2 & yes "$GITHUB_TOKEN" & sleep 3; kill 0',
                         timeout=0.5)
    assert result.timed_out
    assert time.monotonic() - started < 2.5
    assert TOKEN.encode() not in result.stdout + result.stderr


def test_timeout_when_command_closes_its_output(client: Client, scope: str) -> None:
    started = time.monotonic()
    result = run_command(client, scope, "exec >/dev/null 2>&1; sleep 3", timeout=0.5)
    assert result.timed_out
    assert time.monotonic() - started < 2.5
