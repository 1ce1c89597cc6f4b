"""Cancellation, timeouts and failures around the pipelined async client, against a real daemon.

Several tests stop the daemon with SIGSTOP so that requests stay in flight, or
so that a large request blocks in ``send``, and resume it with SIGCONT.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import pytest

from secretd.client import AsyncClient, SecretSpec, StaticSource, arun_command
from secretd.protocol.errors import TransportError

from .conftest import Daemon

TOKEN = "ghp_Zq81Xy77Lm44Kj22Hg00Fd99Ab"


@pytest.fixture
async def connected(daemon: Daemon) -> AsyncIterator[tuple[AsyncClient, str]]:
    async with AsyncClient.connect(daemon.socket_path) as client:
        scope = await client.open_scope("attack")
        await client.update_secrets(scope, [SecretSpec(name="GITHUB_TOKEN", source=StaticSource(value=TOKEN))])
        yield client, scope


@contextmanager
def daemon_stopped(daemon: Daemon) -> Iterator[None]:
    """Stop the daemon process for the block, and resume it even when the block raises."""
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        daemon.process.send_signal(signal.SIGCONT)


# The client after a cancellation.


async def test_cancelled_feed_keeps_responses_matched(daemon: Daemon, connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    stream = await client.open_stream(scope, pipeline=4)
    with daemon_stopped(daemon):
        await stream.send(f"first {TOKEN}\n".encode())
        with anyio.move_on_after(0.2) as waiting:
            await anext(stream)
    assert waiting.cancelled_caught
    assert stream.in_flight == 0
    # The dropped response of the cancelled feed must not reach a later caller.
    assert await client.mask(scope, b"second\n") == b"second\n"
    assert await stream.feed(b"third\n") == b"third\n"


async def test_cancelled_large_send_leaves_client_usable(daemon: Daemon, connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    # 16 MiB exceeds the 4 MiB send and receive buffers that both ends request, so the send blocks part way.
    with daemon_stopped(daemon):
        with anyio.move_on_after(0.3) as sending:
            await client.mask(scope, b"x" * (16 << 20))
    assert sending.cancelled_caught
    # The next call must get its response or fail at once. A request cut short must not
    # swallow it until the daemon's idle timeout (30 s by default) closes the connection.
    started = time.monotonic()
    with anyio.fail_after(5):
        try:
            status = await client.status()
        except TransportError:
            status = None
    assert time.monotonic() - started < 5
    if status is not None:
        assert status.streams == 0


async def test_discard_after_cancelled_close(daemon: Daemon, connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    stream = await client.open_stream(scope, pipeline=4)
    with daemon_stopped(daemon):
        await stream.send(b"in flight\n")
        with anyio.move_on_after(0.2) as closing:
            await stream.close()
    assert closing.cancelled_caught
    await stream.discard()
    assert (await client.status()).streams == 0


async def test_invalid_pipeline_leaves_no_stream(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    with pytest.raises(ValueError, match="pipeline"):
        await client.open_stream(scope, pipeline=0)
    assert (await client.status()).streams == 0


# arun_command.


async def test_concurrent_commands_outputs_not_mixed(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    results = {}
    seen: dict[int, dict[str, list[bytes]]] = {}

    async def run(index: int) -> None:
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        seen[index] = chunks
        command = f'for j in $(seq 1 500); do echo "out{index} $j $GITHUB_TOKEN"; echo "err{index} $j $GITHUB_TOKEN" >&2; done'
        results[index] = await arun_command(client, scope, command, on_output=lambda name, data: chunks[name].append(data))

    async with anyio.create_task_group() as tasks:
        for index in range(8):
            tasks.start_soon(run, index)
    for index in range(8):
        expected_stdout = b"".join(b"out%d %d <secret-hidden>\n" % (index, j) for j in range(1, 501))
        expected_stderr = b"".join(b"err%d %d <secret-hidden>\n" % (index, j) for j in range(1, 501))
        assert results[index].stdout == expected_stdout
        assert results[index].stderr == expected_stderr
        assert b"".join(seen[index]["stdout"]) == expected_stdout
        assert b"".join(seen[index]["stderr"]) == expected_stderr


async def test_cancelled_command_closes_its_streams(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    with anyio.move_on_after(0.5) as waiting:
        await arun_command(client, scope, 'echo "$GITHUB_TOKEN"; sleep 5')
    assert waiting.cancelled_caught
    assert (await client.status()).streams == 0


async def test_spawn_failures_keep_client_usable(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    # The daemon allows 64 streams per connection, and each command opens two.
    for _ in range(33):
        with pytest.raises(FileNotFoundError):
            await arun_command(client, scope, "echo never", cwd="/nonexistent/directory")
    assert (await client.status()).streams == 0
    assert (await arun_command(client, scope, 'echo "$GITHUB_TOKEN"')).stdout == b"<secret-hidden>\n"


async def test_timeout_with_output_on_both_streams(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    # Both pipes always have output waiting, and the command ends itself after 3 s.
    command = 'yes "$GITHUB_TOKEN" >&2 & yes "$GITHUB_TOKEN" & sleep 3; kill 0'
    started = time.monotonic()
    result = await arun_command(client, scope, command, timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert elapsed < 2.5
    assert TOKEN.encode() not in result.stdout + result.stderr


async def test_timeout_when_command_closes_its_pipes(connected: tuple[AsyncClient, str]) -> None:
    client, scope = connected
    started = time.monotonic()
    result = await arun_command(client, scope, "exec >/dev/null 2>&1; sleep 3", timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert elapsed < 2.5
