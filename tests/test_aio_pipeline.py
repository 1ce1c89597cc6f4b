"""Pipelined feeds in the async client and ``arun_command``, under asyncio and trio, against a real daemon."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from secretd.client import (
    AsyncClient,
    EnvResult,
    MaskingUnavailable,
    NotFoundError,
    SecretSpec,
    StaticSource,
    arun_command,
)
from secretd.client.terminal import _PIPELINE

from .conftest import Daemon, start_daemon

TOKEN = "ghp_Zq81Xy77Lm44Kj22Hg00Fd99Ab"


async def _open_scope(client: AsyncClient) -> str:
    scope = await client.open_scope("pipeline")
    await client.update_secrets(scope, [SecretSpec(name="GITHUB_TOKEN", source=StaticSource(value=TOKEN))])
    return scope


@pytest.fixture
async def connected(daemon: Daemon) -> AsyncIterator[tuple[AsyncClient, str]]:
    async with AsyncClient.connect(daemon.socket_path) as client:
        yield client, await _open_scope(client)


# The stream and the client.


async def test_start_call_then_finish_call(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    first = await client.start_call("mask", scope, f"a {TOKEN}".encode())
    second = await client.start_call("mask", scope, f"b {TOKEN}".encode())
    assert await client.finish_call(second) == b"b <secret-hidden>"
    assert await client.finish_call(first) == b"a <secret-hidden>"


async def test_finish_call_raises_remote_error(connected: tuple[AsyncClient, str]) -> None:
    client, _ = connected
    pending = await client.start_call("stream.feed", 999, b"data")
    with pytest.raises(NotFoundError, match="stream 999"):
        await client.finish_call(pending)


async def test_sent_chunks_yield_outputs_in_order(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    data = b"".join(b"line %d %s\n" % (index, TOKEN.encode()) for index in range(2000))
    # Chunks of 7 bytes split each value across several feeds.
    chunks = [data[start : start + 7] for start in range(0, len(data), 7)]
    stream = await client.open_stream(scope, pipeline=4)
    outputs: list[bytes] = []

    async def send_all() -> None:
        for chunk in chunks:
            await stream.send(chunk)
            assert stream.in_flight <= 4
        stream.end_input()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send_all)
        async for output in stream:
            outputs.append(output)
    assert len(outputs) == len(chunks)
    assert b"".join(outputs) + await stream.close() == data.replace(TOKEN.encode(), b"<secret-hidden>")


async def test_send_waits_while_pipeline_full(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    stream = await client.open_stream(scope, pipeline=3)
    sent: list[int] = []

    async def send_four() -> None:
        for index in range(4):
            await stream.send(b"chunk %d\n" % index)
            sent.append(index)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send_four)
        await anyio.wait_all_tasks_blocked()
        assert sent == [0, 1, 2]
        assert stream.in_flight == 3
        assert await anext(stream) == b"chunk 0\n"
    assert sent == [0, 1, 2, 3]
    assert await stream.drain() == b"chunk 1\nchunk 2\nchunk 3\n"


async def test_feed_returns_outputs_in_flight_first(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    stream = await client.open_stream(scope, pipeline=4)
    await stream.send(b"one\n")
    await stream.send(b"two\n")
    assert await stream.feed(b"three\n") == b"one\ntwo\nthree\n"
    assert stream.in_flight == 0


async def test_failed_feed_mid_pipeline_drops_later_outputs(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    stream = await client.open_stream(scope, pipeline=8)
    await stream.send(b"before one\n")
    await stream.send(f"before {TOKEN}\n".encode())
    # The daemon handles the requests of one connection in order, so the feeds
    # sent after the scope is closed fail, and those sent before do not.
    closing = await client.start_call("scope.close", scope)
    await stream.send(f"after {TOKEN}\n".encode())
    await stream.send(b"after two\n")
    assert stream.in_flight == 4
    assert await anext(stream) == b"before one\n"
    assert await anext(stream) == b"before <secret-hidden>\n"
    with pytest.raises(NotFoundError):
        await anext(stream)
    assert stream.in_flight == 0
    stream.end_input()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await client.finish_call(closing)


# arun_command.


async def test_long_output_masked_exactly_in_order(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    command = 'for i in $(seq 1 20000); do echo "out $i $GITHUB_TOKEN"; echo "err $i $GITHUB_TOKEN" >&2; done'
    seen: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    result = await arun_command(client, scope, command, on_output=lambda name, data: seen[name].append(data))
    expected_stdout = b"".join(b"out %d <secret-hidden>\n" % index for index in range(1, 20001))
    expected_stderr = b"".join(b"err %d <secret-hidden>\n" % index for index in range(1, 20001))
    assert result.exit_code == 0
    assert result.stdout == expected_stdout
    assert result.stderr == expected_stderr
    assert b"".join(seen["stdout"]) == expected_stdout
    assert b"".join(seen["stderr"]) == expected_stderr


async def test_first_line_shown_before_command_ends(connected: tuple[AsyncClient, str], tmp_path: Path) -> None:
    client, scope = connected
    # The command prints its second line only after on_output has received the first.
    flag = tmp_path / "seen"
    command = f'echo "first $GITHUB_TOKEN"; while [ ! -e {flag} ]; do sleep 0.02; done; echo second'
    seen: list[bytes] = []

    def on_output(name: str, data: bytes) -> None:
        seen.append(data)
        if b"first <secret-hidden>\n" in b"".join(seen):
            flag.touch()

    result = await arun_command(client, scope, command, timeout=20, on_output=on_output)
    assert not result.timed_out
    assert seen[0] == b"first <secret-hidden>\n"
    assert result.stdout == b"first <secret-hidden>\nsecond\n"


async def test_burst_in_flight_shown_when_command_pauses(connected: tuple[AsyncClient, str], tmp_path: Path) -> None:
    client, scope = connected
    # A burst larger than the pipeline, then a wait until the caller has seen all of it.
    flag = tmp_path / "seen"
    command = (
        f'for i in $(seq 1 {_PIPELINE * 40}); do echo "burst $i"; done; '
        f"while [ ! -e {flag} ]; do sleep 0.02; done; echo after"
    )
    last_line = b"burst %d\n" % (_PIPELINE * 40)
    seen: list[bytes] = []

    def on_output(name: str, data: bytes) -> None:
        seen.append(data)
        if b"".join(seen).endswith(last_line):
            flag.touch()

    result = await arun_command(client, scope, command, timeout=20, on_output=on_output)
    assert not result.timed_out
    assert result.stdout.endswith(last_line + b"after\n")


async def test_timeout_still_shows_output_read(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    result = await arun_command(client, scope, 'echo "begin $GITHUB_TOKEN"; sleep 30', timeout=0.5)
    assert result.timed_out
    assert result.exit_code != 0
    assert result.stdout == b"begin <secret-hidden>\n"


async def test_daemon_killed_mid_command_withholds_output(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short)
    flag = tmp_short / "killed"
    command = (
        f'echo start; while [ ! -e {flag} ]; do sleep 0.02; done; '
        'echo "$GITHUB_TOKEN"; echo "$GITHUB_TOKEN" >&2; echo end'
    )
    seen: list[bytes] = []

    def on_output(name: str, data: bytes) -> None:
        seen.append(data)
        if data == b"start\n":
            daemon.process.kill()
            daemon.process.wait(10)
            flag.touch()

    try:
        async with AsyncClient.connect(daemon.socket_path) as client:
            scope = await _open_scope(client)
            with pytest.raises(MaskingUnavailable, match="withheld") as raised:
                await arun_command(client, scope, command, timeout=20, on_output=on_output)
    finally:
        daemon.process.kill()
        daemon.process.wait(10)
    assert type(raised.value) is MaskingUnavailable
    assert seen == [b"start\n"]
    assert TOKEN.encode() not in b"".join(seen)


async def test_scope_closed_mid_command_withholds_output(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    # The command writes without pause, so feeds are in flight when the scope closes.
    command = 'i=0; while true; do i=$((i + 1)); echo "line $i $GITHUB_TOKEN"; done'
    expected = b"".join(b"line %d <secret-hidden>\n" % index for index in range(1, 200001))
    seen: list[bytes] = []
    first_output = anyio.Event()

    def on_output(name: str, data: bytes) -> None:
        seen.append(data)
        first_output.set()

    async def close_scope_after_first_output() -> None:
        await first_output.wait()
        await client.close_scope(scope)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(close_scope_after_first_output)
        with pytest.raises(MaskingUnavailable, match="withheld") as raised:
            await arun_command(client, scope, command, timeout=20, on_output=on_output)
        tasks.cancel_scope.cancel()
    assert type(raised.value) is MaskingUnavailable
    emitted = b"".join(seen)
    assert TOKEN.encode() not in emitted
    assert emitted == expected[: len(emitted)]


async def test_stdin_defaults_to_dev_null(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    result = await arun_command(client, scope, "readlink /proc/self/fd/0; cat")
    assert result.stdout == b"/dev/null\n"


@pytest.mark.parametrize("kind", ["file object", "descriptor"])
async def test_stdin_given_is_read_and_masked(connected: tuple[AsyncClient, str], tmp_path: Path, kind: str) -> None:
    client, scope = connected
    path = tmp_path / "input"
    path.write_bytes(f"input {TOKEN}\nsecond line\n".encode())
    with open(path, "rb") as file:
        stdin = file if kind == "file object" else file.fileno()
        result = await arun_command(client, scope, "cat", stdin=stdin)
    assert result.stdout == b"input <secret-hidden>\nsecond line\n"


async def test_stdin_pipe_rejected(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    with pytest.raises(ValueError, match="PIPE"):
        await arun_command(client, scope, "cat", stdin=subprocess.PIPE)


async def test_resolved_env_used_as_given(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    # The command references GITHUB_TOKEN, but only what ``resolved`` contains is injected.
    resolved = EnvResult(env={"OTHER": "value-from-caller"}, errors={"MISSING": "source failed"})
    result = await arun_command(
        client, scope, 'echo "${OTHER}-${GITHUB_TOKEN:-unset}"', resolved=resolved, env={"PATH": os.environ["PATH"]},
    )
    assert result.stdout == b"value-from-caller-unset\n"
    assert result.injected == ["OTHER"]
    assert result.errors == {"MISSING": "source failed"}


async def test_failed_command_closes_its_streams(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected

    def stop_reading(name: str, data: bytes) -> None:
        raise RuntimeError("the agent stopped reading")

    with pytest.raises(RuntimeError, match="stopped reading"):
        await arun_command(client, scope, 'for i in $(seq 1 2000); do echo "line $i $GITHUB_TOKEN"; done',
                           on_output=stop_reading)
    # Both streams are closed in the daemon, and the connection goes on serving.
    assert (await client.status()).streams == 0
    assert (await arun_command(client, scope, 'echo "$GITHUB_TOKEN"')).stdout == b"<secret-hidden>\n"
