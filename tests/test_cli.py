"""secretctl, called as ``main([...])`` and as a real process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from secretd.client.cli import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, main

from .conftest import Daemon

VALUE = "Zq81-cli-secret-value-Xy77"


def _ctl(daemon: Daemon, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secretd.client.cli", "--socket", str(daemon.socket_path), *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


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
