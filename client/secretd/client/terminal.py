"""Run a command with secrets in its environment and its output masked as it arrives.

The values go into the child's environment only: never into argv, never
typed into a shell.  stdout and stderr each pass through a daemon-side mask
stream chunk by chunk.  The integration fails closed.  If the daemon cannot
mask (it went away, the connection broke), the child is killed and
``MaskingUnavailable`` is raised, and no unmasked byte is returned or passed
to ``on_output``.

The child's stdin is ``/dev/null`` unless the caller passes ``stdin``, so that a
command run for an agent cannot wait for input that no one will send.
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Literal

from secretd.protocol.errors import SecretdError
from secretd.protocol.messages import EnvResult

from .blocking import Client, MaskStream

__all__ = ["CommandResult", "MaskingUnavailable", "run_argv", "run_command"]

StreamName = Literal["stdout", "stderr"]
OutputCallback = Callable[[StreamName, bytes], None]
#: A ``stdin`` argument of ``subprocess.Popen``: ``None`` (inherit), ``subprocess.DEVNULL``,
#: a file descriptor or a file object.
Stdin = int | IO[bytes] | None

#: The signals that ``forward_signals=True`` passes on to the program's process group.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
#: Seconds a program may take to exit after a forwarded SIGTERM before its process group is killed.
_TERM_GRACE = 5.0


class MaskingUnavailable(SecretdError):
    """The daemon could not mask the output, so it was withheld."""


@dataclass
class CommandResult:
    """Exit status and masked output of one command."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    injected: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    timed_out: bool = False

    @property
    def output(self) -> str:
        """stdout then stderr, decoded as UTF-8 (invalid bytes replaced)."""
        return (self.stdout + self.stderr).decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"CommandResult(exit_code={self.exit_code}, injected={self.injected!r}, timed_out={self.timed_out})"


def run_command(
    client: Client,
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
    forward_signals: bool = False,
) -> CommandResult:
    """Run ``command`` with ``bash -c``, the secrets it references in its environment.

    ``stdin`` is ``/dev/null`` by default, so that the command cannot block on
    input; ``None`` makes it inherit this process's stdin.  ``resolved`` is the
    environment already resolved for this command (it is resolved here when
    ``None``).  ``forward_signals`` passes SIGTERM, SIGINT, SIGHUP and SIGQUIT
    received while the command runs on to its process group, and kills the group
    if it has not exited 5 seconds after a SIGTERM.  It installs signal handlers,
    so it works only in the main thread.
    """
    return _run(client, scope, [shell, "-c", command], command, all_secrets, cwd, env, timeout, on_output,
                stdin, resolved, forward_signals)


def run_argv(
    client: Client,
    scope: str | None,
    argv: Sequence[str],
    *,
    all_secrets: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_output: OutputCallback | None = None,
    stdin: Stdin = subprocess.DEVNULL,
    resolved: EnvResult | None = None,
    forward_signals: bool = False,
) -> CommandResult:
    """Run a program directly; the secrets its arguments reference go into its environment.

    ``stdin``, ``resolved`` and ``forward_signals`` are as for ``run_command``.
    """
    return _run(client, scope, list(argv), shlex.join(argv), all_secrets, cwd, env, timeout, on_output,
                stdin, resolved, forward_signals)


def _run(
    client: Client,
    scope: str | None,
    argv: list[str],
    reference_text: str,
    all_secrets: bool,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
    on_output: OutputCallback | None,
    stdin: Stdin,
    resolved: EnvResult | None,
    forward_signals: bool,
) -> CommandResult:
    _check_stdin(stdin)
    if resolved is None:
        resolved = client.resolve_env(scope, reference_text, all=all_secrets)
    deadline = None if timeout is None else time.monotonic() + timeout
    child_env = dict(os.environ if env is None else env)
    child_env.update(resolved.env)
    streams: dict[str, MaskStream] = {}
    try:
        for name in ("stdout", "stderr"):
            streams[name] = _open(client, scope)
    except BaseException as exc:
        _discard(streams, exc)
        if isinstance(exc, SecretdError):
            raise MaskingUnavailable(f"cannot open mask streams, command not run: {exc}") from None
        raise
    forwarder = _SignalForwarder() if forward_signals else None
    try:
        process = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=child_env, cwd=cwd, start_new_session=True,
        )
    except BaseException as exc:
        if forwarder is not None:
            forwarder.restore()
        _discard(streams, exc)
        raise
    if forwarder is not None:
        forwarder.attach(process)
    injected = sorted(resolved.env)
    del child_env
    collected: dict[StreamName, list[bytes]] = {"stdout": [], "stderr": []}
    try:
        with process:
            try:
                timed_out = _pump(process, streams, collected, deadline, on_output)
                for name in ("stdout", "stderr"):
                    tail = _masked(streams[name].close)
                    _emit(name, tail, collected, on_output)
                # A command may close its output and go on running.
                if not timed_out and not _exited_by(process, deadline):
                    _kill(process)
                    timed_out = True
            except BaseException as exc:
                _kill(process)
                _discard(streams, exc)
                raise
        exit_code = process.wait()
    finally:
        if forwarder is not None:
            forwarder.restore()
    return CommandResult(
        exit_code=exit_code,
        stdout=b"".join(collected["stdout"]),
        stderr=b"".join(collected["stderr"]),
        injected=injected,
        errors=dict(resolved.errors),
        timed_out=timed_out,
    )


class _SignalForwarder:
    """Signal handlers that pass ``FORWARDED_SIGNALS`` on to a child's process group.

    The handlers are installed before the child starts. A signal that arrived
    in between would otherwise get the default action, which ends this process
    and leaves the child running. Such a signal is forwarded by ``attach``.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: list[int] = []
        self._kill_timer: threading.Timer | None = None
        self._previous = {signum: signal.signal(signum, self._handle) for signum in FORWARDED_SIGNALS}

    def attach(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        for signum in self._pending:
            self._forward(signum)
        self._pending.clear()

    def restore(self) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self._process is None:
            self._pending.append(signum)
        else:
            self._forward(signum)

    def _forward(self, signum: int) -> None:
        assert self._process is not None
        _signal_group(self._process, signum)
        if signum == signal.SIGTERM and self._kill_timer is None:
            self._kill_timer = threading.Timer(_TERM_GRACE, _signal_group, (self._process, signal.SIGKILL))
            self._kill_timer.daemon = True
            self._kill_timer.start()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    # Once the child is reaped its pid may be reused, so the group is signalled
    # only before that.  Until then the pid, and with it the group id, stay taken.
    if process.returncode is None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass


# Feeds in flight per output stream while the child keeps writing. The
# daemon masks the chunks that arrived together with one scan while the
# next are read and sent, and what is in flight is shown as soon as the
# child pauses.
_PIPELINE = 16


def _open(client: Client, scope: str | None) -> MaskStream:
    return MaskStream(client, int(client.call("stream.open", scope)), pipeline=_PIPELINE)


def _masked(operation: Callable[[], bytes]) -> bytes:
    try:
        return operation()
    except SecretdError as exc:
        raise MaskingUnavailable(
            f"secretd could not mask the command's output, so it was withheld: {exc}"
        ) from None


def _emit(name: StreamName, data: bytes, collected: dict[StreamName, list[bytes]], on_output: OutputCallback | None) -> None:
    if data:
        collected[name].append(data)
        if on_output is not None:
            on_output(name, data)


def _pump(
    process: subprocess.Popen[bytes],
    streams: dict[str, MaskStream],
    collected: dict[StreamName, list[bytes]],
    deadline: float | None,
    on_output: OutputCallback | None,
) -> bool:
    """Copy the child's output through the mask streams until both pipes close; return whether it timed out."""
    assert process.stdout is not None and process.stderr is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, "stdout")
        selector.register(process.stderr, selectors.EVENT_READ, "stderr")
        while selector.get_map():
            if deadline is not None and time.monotonic() >= deadline:
                # Checked on every round: a command that never stops writing never lets select wait.
                _kill(process)
                return True
            events = selector.select(0) if any(stream.in_flight for stream in streams.values()) else []
            if not events:
                # Nothing more to read now: show the output still in flight before waiting.
                for name, stream in streams.items():
                    if stream.in_flight:
                        _emit(name, _masked(stream.drain), collected, on_output)
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = selector.select(wait)
            if not events and deadline is not None and time.monotonic() >= deadline:
                _kill(process)
                return True
            for key, _ in events:
                name: StreamName = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                _emit(name, _masked(lambda: streams[name].feed(chunk)), collected, on_output)
    return False


def _check_stdin(stdin: Stdin) -> None:
    """Reject ``subprocess.PIPE``: nothing would write to it, so the command would wait for ever."""
    if stdin == subprocess.PIPE:
        raise ValueError("stdin=subprocess.PIPE would leave the command waiting: nothing writes to the pipe")


def _exited_by(process: subprocess.Popen[bytes], deadline: float | None) -> bool:
    """Wait for the process until `deadline` (a `time.monotonic` value, or None for no limit); return whether it exited."""
    try:
        process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _discard(streams: dict[str, MaskStream], error: BaseException) -> None:
    """Close the mask streams of a command that failed, without showing their output."""
    if isinstance(error, Exception):  # not after Ctrl-C, which may have cut a request short
        for stream in streams.values():
            stream.discard()


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        _signal_group(process, signal.SIGKILL)
    process.wait()
