"""Hand environment variables to a running shell through a named pipe.

The OpenHands terminal tool types ``export NAME=$'value'`` into its
persistent shell, so every value lands in the shell's history (and
``~/.bash_history`` when the shell exits) and in the tmux scrollback.  Here
the terminal gets only ``. /path/to/pipe``, which sources a named pipe, and
a thread of this process writes the ``export`` lines into that pipe.  The
values pass through a kernel pipe buffer: no terminal, no history, no file
contents on disk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["EnvPipe", "PipeDirectory", "export_script"]

#: Seconds to wait for the shell to open the pipe before giving up.
DEFAULT_OPEN_TIMEOUT = 30.0

# Polling interval for the non-blocking open, in seconds: a blocking open could
# not be abandoned when the shell never runs the ``.`` command.
_POLL_INTERVAL = 0.002

# Saves the shell's xtrace and verbose flags, turns both off while the export
# lines run so that neither prints a value to the terminal, then restores them.
_QUIET_START = "{ __secretd_flags=$-; set +xv; } 2>/dev/null\n"
_QUIET_END = (
    "{ case $__secretd_flags in *x*) set -x;; esac; "
    "case $__secretd_flags in *v*) set -v;; esac; unset __secretd_flags; } 2>/dev/null\n"
)


def export_script(env: Mapping[str, str]) -> str:
    """Build the bash lines that export ``env``, with xtrace and verbose muted.

    Every name must be a valid shell identifier; values are single-quoted, so
    any byte but NUL survives unchanged.
    """
    lines = [_QUIET_START]
    for name, value in env.items():
        if not name.isidentifier() or not name.isascii():
            raise ValueError(f"invalid environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}\n")
    lines.append(_QUIET_END)
    return "".join(lines)


class PipeDirectory:
    """A private directory (mode 0700) that contains the named pipes of one executor.

    ``owner`` is the uid of the shell that reads the pipes; when it is not the
    current user (the terminal tool's ``username`` option run as root), the
    directory and its pipes are handed to that uid.
    """

    def __init__(self, owner: int | None = None) -> None:
        base = os.environ.get("XDG_RUNTIME_DIR")
        if base is None or not os.path.isdir(base):
            base = None
        self.path = Path(tempfile.mkdtemp(prefix="secretd-openhands-", dir=base))
        self.owner = owner
        if owner is not None and owner != os.geteuid():
            os.chown(self.path, owner, -1)

    def pipe(self, env: Mapping[str, str], timeout: float = DEFAULT_OPEN_TIMEOUT) -> EnvPipe:
        """Create a named pipe that delivers ``env`` once to the first shell that sources it."""
        return EnvPipe(self, export_script(env), timeout)

    def close(self) -> None:
        """Remove the directory and any pipe still in it."""
        shutil.rmtree(self.path, ignore_errors=True)


class EnvPipe:
    """One named pipe that a writer thread fills with export lines once a reader opens it.

    Use as a context manager: entering creates the pipe and starts the
    writer, ``source_command`` is the line to run in the shell, and leaving
    waits for the writer and removes the pipe.  ``delivered`` is true once
    the shell has read the whole script.
    """

    def __init__(self, directory: PipeDirectory, script: str, timeout: float) -> None:
        self.path = directory.path / f"env-{secrets.token_hex(8)}"
        self._owner = directory.owner
        self._script = script.encode("utf-8", "surrogateescape")
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.delivered = False
        self.error: str | None = None

    @property
    def source_command(self) -> str:
        """The shell line that reads the export lines from the pipe."""
        return f". {shlex.quote(str(self.path))}"

    def __enter__(self) -> EnvPipe:
        os.mkfifo(self.path, 0o600)
        if self._owner is not None and self._owner != os.geteuid():
            os.chown(self.path, self._owner, -1)
        self._thread = threading.Thread(target=self._write, name="secretd-env-pipe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()

    def finish(self) -> None:
        """Stop waiting for a reader, wait for the writer and remove the pipe.

        When nothing was delivered, a shell may still be about to open the
        pipe, and would then wait for a writer forever.  Holding the pipe open
        for reading and writing while it is removed wakes such a shell, and
        closing it then gives that shell end-of-file: it sources nothing.
        """
        self._cancel.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            release = None if self.delivered else os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            self.path.unlink()
        finally:
            if release is not None:
                os.close(release)

    def _write(self) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                # O_NONBLOCK: the open fails with ENXIO until a reader has the pipe open.
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    self.error = f"opening the pipe failed: {exc.strerror}"
                    return
            if self._cancel.is_set() or time.monotonic() >= deadline:
                self.error = "the shell did not open the pipe"
                return
            time.sleep(_POLL_INTERVAL)
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
            view = memoryview(self._script)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self.delivered = True
        except OSError as exc:
            self.error = f"writing to the pipe failed: {exc.strerror}"
        finally:
            os.close(fd)
