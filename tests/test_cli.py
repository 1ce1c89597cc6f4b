"""secretctl, called as ``main([...])`` and as a real process."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secretd.client import SecretSpec, StaticSource
from secretd.client.cli import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, main

from .conftest import Daemon, start_daemon

VALUE = "Zq81-cli-secret-value-Xy77"


def _ctl(daemon: Daemon, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secretd.client.cli", "--socket", str(daemon.socket_path), *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


def _ctl_argv(daemon: Daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "secretd.client.cli", "--socket", str(daemon.socket_path), *args]


def _start_run(daemon: Daemon, *program: str) -> subprocess.Popen[bytes]:
    """Start ``secretctl run -- PROGRAM`` and wait for the program's first line of output."""
    process = subprocess.Popen(_ctl_argv(daemon, "run", "--", *program), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.first_line = process.stdout.readline()  # type: ignore[attr-defined]
    return process


def _alive(pid: int) -> bool:
    """Tell whether ``pid`` is a process that has not exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _end_run(run: subprocess.Popen[bytes], *pids: int) -> None:
    """Kill what a test's `secretctl run` and its program left running, these processes first."""
    for pid in (*pids, run.pid):
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    run.wait(10)


def _set_from_stdin(monkeypatch: pytest.MonkeyPatch, daemon: Daemon, name: str, value: str, *extra: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(value + "\n"))
    return main(["--socket", str(daemon.socket_path), "set", name, *extra])


def test_set_list_get_rm(daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(daemon.socket_path)
    assert _set_from_stdin(monkeypatch, daemon, "API_KEY", VALUE, "--description", "test key") == 0
    assert main(["--socket", sock, "set", "HOME_DIR", "--env", "HOME"]) == 0
    capsys.readouterr()

    assert main(["--socket", sock, "list"]) == 0
    listing = capsys.readouterr().out
    assert "API_KEY" in listing
    assert "test key" in listing
    assert "static" in listing
    assert VALUE not in listing

    assert main(["--socket", sock, "--json", "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["API_KEY", "HOME_DIR"]
    assert rows[1]["source"] == "env"

    assert main(["--socket", sock, "get", "API_KEY"]) == 0
    assert capsys.readouterr().out == VALUE + "\n"

    assert main(["--socket", sock, "rm", "API_KEY", "HOME_DIR"]) == 0
    assert main(["--socket", sock, "get", "API_KEY"]) == EXIT_NOT_FOUND
    assert "no secret named 'API_KEY'" in capsys.readouterr().err


def test_status(daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _set_from_stdin(monkeypatch, daemon, "PIN", "12")
    assert "shorter than 4 characters" in capsys.readouterr().err
    assert main(["--socket", str(daemon.socket_path), "status"]) == 0
    out = capsys.readouterr().out
    assert str(daemon.socket_path) in out
    assert "too short to mask (under 4 characters): PIN" in out
    assert main(["--socket", str(daemon.socket_path), "--json", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["secrets"] == 1
    assert status["too_short"] == ["PIN"]
    assert status["uptime"] >= 0


def test_status_shows_masker(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    from secretd.daemon.masking import COMPILED
    from secretd.daemon.masking.escapes import ACCELERATED

    assert main(["--socket", str(daemon.socket_path), "--json", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["masker_accelerated"] is ACCELERATED
    assert status["masker_compiled"] is COMPILED
    assert main(["--socket", str(daemon.socket_path), "status"]) == 0
    out = capsys.readouterr().out
    expected = "masker:       C module (fast)" if ACCELERATED else "masker:       pure Python (slow: "
    assert expected in out
    assert (", modules compiled with mypyc\n" in out) is COMPILED


def test_status_pure_python_masker() -> None:
    import msgspec

    from secretd.client.cli import _format_status
    from secretd.protocol.messages import StatusResult

    fields = {"daemon_version": "1", "protocol": 1, "instance_id": "i", "pid": 1, "uptime": 1.0, "socket": "s",
              "scopes": 0, "secrets": 0, "global_secrets": 0, "connections": 1, "streams": 0, "too_short": [],
              "placeholder": "<secret-hidden>", "reference_mode": "word"}
    slow = msgspec.convert({**fields, "masker_accelerated": False}, StatusResult)
    assert "masker:       pure Python (slow: reinstall secretd with a C compiler" in _format_status(slow)
    fast = msgspec.convert({**fields, "masker_accelerated": True}, StatusResult)
    assert "masker:       C module (fast)\n" in _format_status(fast)
    compiled = msgspec.convert({**fields, "masker_accelerated": True, "masker_compiled": True}, StatusResult)
    assert "masker:       C module (fast), modules compiled with mypyc\n" in _format_status(compiled)


def test_resolve_prints_names_only(daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _set_from_stdin(monkeypatch, daemon, "API_KEY", VALUE)
    _set_from_stdin(monkeypatch, daemon, "OTHER_KEY", VALUE + "2")
    capsys.readouterr()
    assert main(["--socket", str(daemon.socket_path), "resolve", "curl -H 'X: $API_KEY' x"]) == 0
    assert capsys.readouterr().out == "API_KEY\n"


def test_mask_and_run_as_processes(daemon: Daemon, tmp_short: Path) -> None:
    assert _ctl(daemon, "set", "API_KEY", stdin=VALUE + "\n").returncode == 0
    masked = _ctl(daemon, "mask", stdin=f"key={VALUE}\nplain line\n")
    assert masked.returncode == 0
    assert masked.stdout == "key=<secret-hidden>\nplain line\n"

    log = tmp_short / "out.log"
    log.write_text(f"from file {VALUE}\n")
    assert _ctl(daemon, "mask", str(log)).stdout == "from file <secret-hidden>\n"

    run = _ctl(daemon, "run", "--", "sh", "-c", 'echo "$API_KEY"; echo err "$API_KEY" >&2; exit 3', "API_KEY")
    assert run.returncode == 3
    assert run.stdout == "<secret-hidden>\n"
    assert run.stderr == "err <secret-hidden>\n"

    count = "env | grep -c Zq81-cli || true"
    assert _ctl(daemon, "run", "--", "sh", "-c", count).stdout == "0\n"
    assert _ctl(daemon, "run", "--all", "--", "sh", "-c", count).stdout == "1\n"


def test_value_never_in_argv(daemon: Daemon) -> None:
    result = _ctl(daemon, "set", "API_KEY", "--description", "d", stdin=VALUE)
    assert result.returncode == 0
    assert result.args.count(VALUE) == 0


def test_daemon_not_running(tmp_short: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_short / "absent.sock"
    assert main(["--socket", str(path), "status"]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(path) in err
    assert "Start it with 'secretd'" in err


def test_usage_errors(daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _set_from_stdin(monkeypatch, daemon, "bad-name", VALUE) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "invalid secret name 'bad-name'" in err
    assert VALUE not in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["--socket", str(daemon.socket_path), "set", "EMPTY"]) == EXIT_USAGE
    assert main(["--socket", str(daemon.socket_path), "run"]) == EXIT_USAGE


def test_failed_source_reported_by_resolve_and_run(daemon: Daemon) -> None:
    assert _ctl(daemon, "set", "BROKEN", "--command", "false").returncode == 0
    resolved = _ctl(daemon, "resolve", "echo $BROKEN")
    assert resolved.returncode == 5
    assert resolved.stdout == ""
    assert "BROKEN is referenced but could not be resolved: command 'false' exited with status 1" in resolved.stderr

    refused = _ctl(daemon, "run", "--", "sh", "-c", "echo ran $BROKEN")
    assert refused.returncode == 5
    assert refused.stdout == ""
    assert "program not run" in refused.stderr

    allowed = _ctl(daemon, "run", "--allow-missing", "--", "sh", "-c", "echo ran $BROKEN")
    assert allowed.returncode == 0
    assert allowed.stdout == "ran\n"


def test_value_in_argv_rejected_with_hint(daemon: Daemon) -> None:
    result = _ctl(daemon, "set", "API_KEY", "some-value")
    assert result.returncode == 2
    assert "a value is read from stdin, never from argv" in result.stderr


def test_run_forwards_sigterm_to_program(daemon: Daemon) -> None:
    assert _ctl(daemon, "set", "API_KEY", stdin=VALUE + "\n").returncode == 0
    # sh runs a sleep in the background, in its process group, and waits for it.
    run = _start_run(daemon, "sh", "-c", 'sleep 30 & echo "$$ $!"; wait; echo "$API_KEY"')
    shell_pid, sleep_pid = (int(pid) for pid in run.first_line.split())  # type: ignore[attr-defined]
    try:
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=10)
        assert run.returncode == 128 + signal.SIGTERM
        assert stderr == b""
        assert _wait_gone(shell_pid)
        assert _wait_gone(sleep_pid)
    finally:
        _end_run(run, sleep_pid, shell_pid)


def test_run_ctrl_c_without_traceback(daemon: Daemon) -> None:
    run = _start_run(daemon, "sh", "-c", "echo $$; exec sleep 30")
    program_pid = int(run.first_line)  # type: ignore[attr-defined]
    try:
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=10)
        assert run.returncode == 128 + signal.SIGINT
        assert stderr == b""
        assert _wait_gone(program_pid)
    finally:
        _end_run(run, program_pid)


def test_run_program_reads_stdin(daemon: Daemon) -> None:
    assert _ctl(daemon, "set", "API_KEY", stdin=VALUE + "\n").returncode == 0
    run = _ctl(daemon, "run", "--", "cat", stdin=f"data\nkey {VALUE}\n")
    assert run.returncode == 0
    assert run.stdout == "data\nkey <secret-hidden>\n"


def test_run_resolves_once(daemon: Daemon, tmp_short: Path) -> None:
    # The source succeeds on its first run only, and logs every run.
    runs = tmp_short / "runs"
    script = tmp_short / "once.sh"
    script.write_text(f'#!/bin/sh\necho run >> {runs}\n[ "$(wc -l < {runs})" -eq 1 ] || exit 1\necho {VALUE}\n')
    script.chmod(0o700)
    assert _ctl(daemon, "set", "ONCE", "--command", str(script)).returncode == 0

    run = _ctl(daemon, "run", "--", "sh", "-c", 'test "$ONCE" = ' + VALUE + ' && echo injected')
    assert run.stderr == ""
    assert run.returncode == 0
    assert run.stdout == "injected\n"
    assert runs.read_text() == "run\n"
    audits = [json.loads(line) for line in daemon.log_text().splitlines() if '"audit.resolution"' in line]
    assert [event["decisions"] for event in audits if event["client"] == "secretctl"] == [{"ONCE": "injected (miss)"}]


def test_run_closed_output_exits_141(daemon: Daemon) -> None:
    assert _ctl(daemon, "set", "API_KEY", stdin=VALUE + "\n").returncode == 0
    command = shlex.join(_ctl_argv(daemon, "run", "--", "sh", "-c", 'yes "$API_KEY"'))
    pipeline = subprocess.run(["bash", "-c", f'{command} | head -2; echo "status ${{PIPESTATUS[0]}}"'],
                              capture_output=True, text=True, timeout=60)
    assert pipeline.stdout == "<secret-hidden>\n<secret-hidden>\nstatus 141\n"
    assert pipeline.stderr == ""


def test_mask_unreadable_file(daemon: Daemon, tmp_short: Path) -> None:
    missing = _ctl(daemon, "mask", str(tmp_short / "absent.log"))
    assert missing.returncode == EXIT_USAGE
    assert missing.stderr == f"secretctl: cannot read '{tmp_short / 'absent.log'}': No such file or directory\n"

    directory = _ctl(daemon, "mask", str(tmp_short))
    assert directory.returncode == EXIT_USAGE
    assert directory.stderr == f"secretctl: cannot read '{tmp_short}': Is a directory\n"


def test_run_notes_nothing_injected(daemon: Daemon, tmp_short: Path) -> None:
    script = tmp_short / "deploy.sh"
    script.write_text('#!/bin/sh\necho "key: $API_KEY"\n')
    script.chmod(0o700)
    no_secrets = _ctl(daemon, "run", "--", str(script))
    assert no_secrets.stdout == "key: \n"
    assert no_secrets.stderr == ""

    assert _ctl(daemon, "set", "API_KEY", stdin=VALUE + "\n").returncode == 0
    run = _ctl(daemon, "run", "--", str(script))
    assert run.returncode == 0
    assert run.stdout == "key: \n"
    assert run.stderr.count("\n") == 1
    assert "no secret injected" in run.stderr
    assert "--all" in run.stderr
    suggestion = run.stderr.rstrip("\n").split("name the variable: ")[1]
    assert shlex.split(suggestion) == ["secretctl", "run", "--", "sh", "-c", f"API_KEY=$API_KEY {script}"]

    # Arguments may hold a value, so the note leaves them out.
    with_argument = _ctl(daemon, "run", "--", str(script), VALUE)
    assert VALUE not in with_argument.stderr
    suggestion = with_argument.stderr.rstrip("\n").split("name the variable: ")[1]
    assert shlex.split(suggestion) == ["secretctl", "run", "--", "sh", "-c", f"API_KEY=$API_KEY {script} ..."]

    injected = _ctl(daemon, "run", "--all", "--", str(script))
    assert injected.stdout == "key: <secret-hidden>\n"
    assert injected.stderr == ""


@pytest.mark.parametrize("mode", ["word", "shell", "substring"])
def test_suggested_reference_works_in_mode(mode: str, tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config=f'[daemon]\nreference_mode = "{mode}"\n')
    try:
        script = tmp_short / "deploy.sh"
        script.write_text('#!/bin/sh\necho "key: $API_KEY"\n')
        script.chmod(0o700)
        assert _ctl(daemon, "set", "API_KEY", stdin=VALUE + "\n").returncode == 0
        hint = _ctl(daemon, "run", "--", str(script)).stderr
        suggestion = shlex.split(hint.rstrip("\n").split("name the variable: ")[1])
        assert suggestion[:2] == ["secretctl", "run"]

        run = _ctl(daemon, *suggestion[1:])
        assert run.stdout == "key: <secret-hidden>\n"
        assert run.stderr == ""
    finally:
        assert daemon.stop() == 0


def test_set_and_rm_of_configured_secret_rejected(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config='[secrets.CFG_TOKEN]\nsource = { kind = "static", value = "cfg-value-Zq81Xy77" }\n')
    try:
        override = _ctl(daemon, "set", "CFG_TOKEN", stdin="override-Lm44Kj22\n")
        assert override.returncode == 1
        assert override.stderr.startswith("secretctl: secret 'CFG_TOKEN' is defined in the config file ")
        assert "secretctl reload" in override.stderr
        assert "override-Lm44Kj22" not in override.stderr
        removal = _ctl(daemon, "rm", "CFG_TOKEN")
        assert removal.returncode == 1
        assert "defined in the config file" in removal.stderr
        # Nothing changed: the config's value is still the one served.
        assert _ctl(daemon, "get", "CFG_TOKEN").stdout == "cfg-value-Zq81Xy77\n"
    finally:
        assert daemon.stop() == 0


def test_run_names_denied_secret(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.update_secrets(None, [SecretSpec(name="GIT_ONLY", source=StaticSource(value=VALUE), programs=["git"])])
    run = _ctl(daemon, "run", "--", "sh", "-c", "echo ${#GIT_ONLY}")
    assert run.stdout == "0\n"
    assert run.stderr == ("secretctl: note: GIT_ONLY not injected: program not allowed "
                          "(see its 'inject' and 'programs' settings)\n")
