"""The terminal integration for async agents: ``run_command`` on an ``AsyncClient``.

Same contract as ``terminal.run_command``: values only in the child's
environment, stdout and stderr masked chunk by chunk as they arrive, and
fail closed with ``MaskingUnavailable`` when the daemon cannot mask.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Mapping

import anyio
from anyio.abc import ByteReceiveStream, Process

from secretd.protocol.errors import SecretdError
from secretd.protocol.messages import EnvResult

from .aio import AsyncClient, AsyncMaskStream
from .terminal import _PIPELINE, CommandResult, MaskingUnavailable, OutputCallback, Stdin, StreamName, _check_stdin

__all__ = ["arun_command"]

# How long a failed command waits for the daemon to close its mask streams.
_DISCARD_SECONDS = 5.0


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
    stdin: Stdin = subprocess.DEVNULL,
    resolved: EnvResult | None = None,
) -> CommandResult:
    """Run ``command`` with ``bash -c``, the secrets it references in its environment.

    ``stdin`` is ``/dev/null`` by default, so that the command cannot block on
    input; ``None`` makes it inherit this process's stdin.  ``resolved`` is the
    environment already resolved for this command (it is resolved here when
    ``None``).  Each output stream keeps several chunks in flight to the
    daemon, and each masked output reaches ``on_output`` as soon as the daemon
    returns it.  When the daemon cannot mask, the command is killed and
    ``MaskingUnavailable`` is raised on its own, not inside an exception group.
    """
    _check_stdin(stdin)
    if resolved is None:
        resolved = await client.resolve_env(scope, command, all=all_secrets)
    deadline = math.inf if timeout is None else anyio.current_time() + timeout
    child_env = dict(os.environ if env is None else env)
    child_env.update(resolved.env)
    streams: dict[StreamName, AsyncMaskStream] = {}
    try:
        for name in ("stdout", "stderr"):
            streams[name] = await client.open_stream(scope, pipeline=_PIPELINE)
        process = await anyio.open_process(
            [shell, "-c", command], stdin=stdin, env=child_env, cwd=cwd, start_new_session=True,
        )
    except BaseException as exc:
        await _discard(streams, exc)
        if isinstance(exc, SecretdError):
            raise MaskingUnavailable(f"cannot open mask streams, command not run: {exc}") from None
        raise
    del child_env
    async with process:
        pump = _Pump(process, streams, deadline, on_output)
        try:
            await pump.run()
            for name in ("stdout", "stderr"):
                pump.emit(name, await _masked(streams[name].close()))
            # A command may close its output and go on running.
            with anyio.move_on_at(deadline) as waiting:
                exit_code = await process.wait()
            if waiting.cancelled_caught:
                pump.timed_out = True
                _kill(process)
                exit_code = await process.wait()
        except BaseException as exc:
            _kill(process)
            await _discard(streams, exc)
            raise
    return CommandResult(
        exit_code=exit_code,
        stdout=b"".join(pump.collected["stdout"]),
        stderr=b"".join(pump.collected["stderr"]),
        injected=sorted(resolved.env),
        errors=dict(resolved.errors),
        timed_out=pump.timed_out,
    )


class _Pump:
    """The tasks that copy a child's stdout and stderr through mask streams to ``on_output``, until both pipes close.

    Per output stream, one task sends the chunks read from the child and
    another emits their masked outputs in order.  The timeout stops the
    reading only, so the output of every chunk already read is still emitted.
    """

    def __init__(
        self,
        process: Process,
        streams: dict[StreamName, AsyncMaskStream],
        deadline: float,
        on_output: OutputCallback | None,
    ) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.sources: dict[StreamName, ByteReceiveStream] = {"stdout": process.stdout, "stderr": process.stderr}
        self.process = process
        self.streams = streams
        self.deadline = deadline
        self.on_output = on_output
        self.collected: dict[StreamName, list[bytes]] = {"stdout": [], "stderr": []}
        self.timed_out = False

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                for name in self.streams:
                    tasks.start_soon(self._send_chunks, name)
                    tasks.start_soon(self._emit_outputs, name)
        except BaseExceptionGroup as group:
            raise _error_to_raise(group) from None

    def emit(self, name: StreamName, data: bytes) -> None:
        if data:
            self.collected[name].append(data)
            if self.on_output is not None:
                self.on_output(name, data)

    async def _send_chunks(self, name: StreamName) -> None:
        stream = self.streams[name]
        try:
            while True:
                with anyio.CancelScope(deadline=self.deadline) as reading:
                    try:
                        chunk = await self.sources[name].receive()
                    except anyio.EndOfStream:
                        return
                if reading.cancelled_caught:
                    self._time_out()
                    return
                await _masked(stream.send(chunk))
                # A receive that finds output already buffered returns without the checkpoint
                # where its scope's deadline takes effect, so the deadline is checked here too.
                if anyio.current_time() >= self.deadline:
                    self._time_out()
                    return
        finally:
            stream.end_input()

    def _time_out(self) -> None:
        self.timed_out = True
        _kill(self.process)

    async def _emit_outputs(self, name: StreamName) -> None:
        while True:
            try:
                output = await _masked(anext(self.streams[name]))
            except StopAsyncIteration:
                return
            self.emit(name, output)


async def _discard(streams: dict[StreamName, AsyncMaskStream], error: BaseException) -> None:
    """Close the mask streams of a command that failed or was cancelled, without showing their output."""
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return
    # Shielded from the cancellation being handled, and bounded in case the daemon hangs.
    with anyio.CancelScope(shield=True), anyio.move_on_after(_DISCARD_SECONDS):
        for stream in streams.values():
            await stream.discard()


def _error_to_raise(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Pick the exception that a failed ``_Pump.run`` raises: a masking failure first, else a lone error."""
    masking = group.subgroup(MaskingUnavailable)
    if masking is not None:
        return _first_leaf(masking)
    if len(group.exceptions) == 1:
        only = group.exceptions[0]
        return _error_to_raise(only) if isinstance(only, BaseExceptionGroup) else only
    return group


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _masked(operation) -> bytes:  # type: ignore[no-untyped-def]
    try:
        return await operation  # type: ignore[no-any-return]
    except SecretdError as exc:
        raise MaskingUnavailable(f"secretd could not mask the command's output, so it was withheld: {exc}") from None


def _kill(process: Process) -> None:
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
