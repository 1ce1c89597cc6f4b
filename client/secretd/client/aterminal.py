"""The terminal integration for async agents: ``run_command`` on an ``AsyncClient``.

Same contract as ``terminal.run_command``: values only in the child's
environment, stdout and stderr masked chunk by chunk as they arrive, and
fail closed with ``MaskingUnavailable`` when the daemon cannot mask.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping

import anyio
from anyio.abc import ByteReceiveStream, Process

from secretd.protocol.errors import SecretdError

from .aio import AsyncClient, AsyncMaskStream
from .terminal import CommandResult, MaskingUnavailable, OutputCallback, StreamName

__all__ = ["arun_command"]


async def arun_command(
    client: AsyncClient,
    scope: str | None,
    command: str,
    *,
    all_secrets: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_output: OutputCallback | None = None,
    shell: str = "/bin/bash",
) -> CommandResult:
    """Run ``command`` with ``bash -c``, the secrets it references in its environment."""
    resolved = await client.resolve_env(scope, command, all=all_secrets)
    child_env = dict(os.environ if env is None else env)
    child_env.update(resolved.env)
    try:
        streams = {"stdout": await client.open_stream(scope), "stderr": await client.open_stream(scope)}
    except SecretdError as exc:
        raise MaskingUnavailable(f"cannot open mask streams, command not run: {exc}") from None
    collected: dict[StreamName, list[bytes]] = {"stdout": [], "stderr": []}
    timed_out = False
    process = await anyio.open_process(
        [shell, "-c", command], stdin=subprocess.DEVNULL, env=child_env, cwd=cwd, start_new_session=True,
    )
    del child_env
    async with process:
        try:
            with anyio.move_on_after(timeout) as deadline:
                async with anyio.create_task_group() as tg:
                    assert process.stdout is not None and process.stderr is not None
                    tg.start_soon(_pump, process.stdout, streams["stdout"], "stdout", collected, on_output)
                    tg.start_soon(_pump, process.stderr, streams["stderr"], "stderr", collected, on_output)
            if deadline.cancelled_caught:
                timed_out = True
                _kill(process)
            for name in ("stdout", "stderr"):
                _emit(name, await _masked(streams[name].close()), collected, on_output)
        except BaseException:
            _kill(process)
            raise
        exit_code = await process.wait()
    return CommandResult(
        exit_code=exit_code,
        stdout=b"".join(collected["stdout"]),
        stderr=b"".join(collected["stderr"]),
        injected=sorted(resolved.env),
        errors=dict(resolved.errors),
        timed_out=timed_out,
    )


async def _pump(
    source: ByteReceiveStream,
    stream: AsyncMaskStream,
    name: StreamName,
    collected: dict[StreamName, list[bytes]],
    on_output: OutputCallback | None,
) -> None:
    async for chunk in source:
        _emit(name, await _masked(stream.feed(chunk)), collected, on_output)


async def _masked(operation) -> bytes:  # type: ignore[no-untyped-def]
    try:
        return await operation  # type: ignore[no-any-return]
    except SecretdError as exc:
        raise MaskingUnavailable(f"secretd could not mask the command's output, so it was withheld: {exc}") from None


def _emit(name: StreamName, data: bytes, collected: dict[StreamName, list[bytes]], on_output: OutputCallback | None) -> None:
    if data:
        collected[name].append(data)
        if on_output is not None:
            on_output(name, data)


def _kill(process: Process) -> None:
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
