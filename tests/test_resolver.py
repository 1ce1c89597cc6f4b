"""Caching, single-flight, back-off, stale values, reference modes and injection policy."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from secretd.client import Client, CommandSource, RemoteError, SecretSpec, StaticSource
from secretd.client.cli import main as secretctl

from .conftest import Daemon, start_daemon


def _counting_script(directory: Path, value: str, delay: float = 0.0) -> tuple[Path, Path, Path]:
    """A command source that counts its runs and fails while ``mode`` says so."""
    runs = directory / "runs"
    mode = directory / "mode"
    mode.write_text("ok")
    script = directory / "source.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"echo run >> {runs}\n"
        f"sleep {delay}\n"
        f'[ "$(cat {mode})" = ok ] || exit 1\n'
        f"echo {value}\n"
    )
    script.chmod(0o700)
    return script, runs, mode


def _runs(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def _events(daemon: Daemon, name: str) -> list[dict[str, object]]:
    return [e for e in (json.loads(l) for l in daemon.log_text().splitlines() if l.startswith("{")) if e["event"] == name]


def test_concurrent_requests_run_source_once(daemon: Daemon, tmp_short: Path) -> None:
    script, runs, _ = _counting_script(tmp_short, "Zq81-single-flight-Xy77", delay=0.5)
    with daemon.client() as setup:
        setup.update_secrets(None, [SecretSpec(name="SLOW", source=CommandSource(argv=[str(script)]))])
    results: list[dict[str, str]] = []

    def resolve() -> None:
        with daemon.client() as client:
            results.append(client.resolve_env(None, "echo $SLOW").env)

    threads = [threading.Thread(target=resolve) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [{"SLOW": "Zq81-single-flight-Xy77"}] * 10
    assert _runs(runs) == 1


def test_ttl_caches_value(client: Client, tmp_short: Path) -> None:
    script, runs, _ = _counting_script(tmp_short, "Zq81-cached-Xy77")
    client.update_secrets(None, [SecretSpec(name="CACHED", source=CommandSource(argv=[str(script)], ttl=60))])
    for _ in range(3):
        assert client.resolve_env(None, "echo $CACHED").env == {"CACHED": "Zq81-cached-Xy77"}
    assert _runs(runs) == 1
    info = client.list_secrets()[0]
    assert info.state == "fresh"
    assert info.age is not None and info.age < 60


def test_failure_serves_stale_then_backs_off_then_recovers(daemon: Daemon, client: Client, tmp_short: Path) -> None:
    script, runs, mode = _counting_script(tmp_short, "Zq81-recovering-Xy77")
    client.update_secrets(None, [SecretSpec(name="FLAKY", source=CommandSource(argv=[str(script)]))])
    assert client.resolve_env(None, "echo $FLAKY").env == {"FLAKY": "Zq81-recovering-Xy77"}
    assert _runs(runs) == 1

    mode.write_text("fail")
    assert client.resolve_env(None, "echo $FLAKY").env == {"FLAKY": "Zq81-recovering-Xy77"}  # stale
    assert _runs(runs) == 2
    info = client.list_secrets()[0]
    assert info.state == "stale"
    assert info.last_error == f"command {str(script)!r} exited with status 1; run it by hand to see its error"

    client.resolve_env(None, "echo $FLAKY")  # inside the 1 s back-off: the source is not run
    assert _runs(runs) == 2

    mode.write_text("ok")
    time.sleep(1.2)
    assert client.resolve_env(None, "echo $FLAKY").env == {"FLAKY": "Zq81-recovering-Xy77"}
    assert _runs(runs) == 3
    assert client.list_secrets()[0].state == "fresh"
    decisions = [e["decisions"] for e in _events(daemon, "audit.resolution")]
    assert {"FLAKY": "injected (miss)"} in decisions
    assert {"FLAKY": "injected (stale)"} in decisions


def test_stale_value_expires(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config="[daemon]\nmax_stale = 0.3\n")
    script, _, mode = _counting_script(tmp_short, "Zq81-expiring-Xy77")
    try:
        with daemon.client() as client:
            client.update_secrets(None, [SecretSpec(name="GONE", source=CommandSource(argv=[str(script)]))])
            assert client.resolve_env(None, "echo $GONE").env
            mode.write_text("fail")
            time.sleep(0.5)
            result = client.resolve_env(None, "echo $GONE")
            assert result.env == {}
            assert "exited with status 1" in result.errors["GONE"]
            assert client.list_secrets()[0].state == "stale"
    finally:
        assert daemon.stop() == 0


def test_reference_modes_per_scope(client: Client) -> None:
    specs = [SecretSpec(name="TOKEN", source=StaticSource(value="Zq81-token-Xy77")),
             SecretSpec(name="GITHUB_TOKEN", source=StaticSource(value="Zq81-gh-Xy77"))]
    command = "grep -rn 'GITHUB_TOKEN' docs/  # mentions the name only"
    results = {}
    for mode in ("word", "shell", "substring"):
        scope = client.open_scope(mode, mode=mode)  # type: ignore[arg-type]
        client.update_secrets(scope, specs)
        results[mode] = sorted(client.resolve_env(scope, command).env)
    assert results == {"word": ["GITHUB_TOKEN"], "shell": [], "substring": ["GITHUB_TOKEN", "TOKEN"]}


def test_daemon_wide_reference_mode(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config='[daemon]\nreference_mode = "shell"\n')
    try:
        with daemon.client() as client:
            client.update_secrets(None, [SecretSpec(name="API_KEY", source=StaticSource(value="Zq81-api-Xy77"))])
            assert client.resolve_env(None, "echo '$API_KEY'").env == {}
            assert client.resolve_env(None, 'bash -c "echo \\$API_KEY"').env == {"API_KEY": "Zq81-api-Xy77"}
            assert client.status().reference_mode == "shell"
    finally:
        assert daemon.stop() == 0


def test_injection_policy(client: Client) -> None:
    client.update_secrets(None, [
        SecretSpec(name="ALWAYS", source=StaticSource(value="Zq81-always-Xy77"), inject="always"),
        SecretSpec(name="NEVER", source=StaticSource(value="Zq81-never-Xy77"), inject="never"),
        SecretSpec(name="GIT_ONLY", source=StaticSource(value="Zq81-git-Xy77"), programs=["git"]),
    ])
    assert sorted(client.resolve_env(None, "ls").env) == ["ALWAYS"]
    denied = client.resolve_env(None, "echo $NEVER $GIT_ONLY")
    assert sorted(denied.env) == ["ALWAYS"]
    assert denied.denied == {"NEVER": "inject = never", "GIT_ONLY": "program not allowed"}
    assert sorted(client.resolve_env(None, "GIT_ONLY=1 git push  # $GIT_ONLY").env) == ["ALWAYS", "GIT_ONLY"]
    assert sorted(client.resolve_env(None, "x", all=True).env) == ["ALWAYS", "GIT_ONLY"]
    assert client.mask(None, b"Zq81-never-Xy77") == b"<secret-hidden>"


def test_reload_applies_and_rejects_atomically(tmp_short: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = '[secrets.FIRST]\nsource = { kind = "static", value = "Zq81-first-Xy77" }\n'
    daemon = start_daemon(tmp_short, config=config)
    config_path = tmp_short / "config.toml"
    socket = ["--socket", str(daemon.socket_path)]
    try:
        with daemon.client() as client:
            config_path.write_text('[secrets.SECOND]\nsource = { kind = "static", value = "Zq81-second-Xy77" }\n')
            assert client.reload() == {"secrets": 1, "settings_changed": []}
            assert [i.name for i in client.list_secrets()] == ["SECOND"]
            assert client.mask(None, b"Zq81-first-Xy77") == b"<secret-hidden>"  # earlier values stay masked

            config_path.write_text('[daemon]\nmax_connections = "many"\n')
            with pytest.raises(RemoteError, match=r"\$\.daemon\.max_connections.*running config is kept"):
                client.reload()
            assert secretctl([*socket, "reload"]) == 1
            assert "max_connections" in capsys.readouterr().err
            assert [i.name for i in client.list_secrets()] == ["SECOND"]

            config_path.write_text('[daemon]\nplaceholder = "[hidden]"\n[secrets.THIRD]\n'
                                   'source = { kind = "static", value = "Zq81-third-Xy77" }\n')
            daemon.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while [i.name for i in client.list_secrets()] != ["THIRD"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [i.name for i in client.list_secrets()] == ["THIRD"]
            assert client.mask(None, b"x Zq81-third-Xy77") == b"x [hidden]"
    finally:
        assert daemon.stop() == 0


def test_documented_config_example_loads(tmp_short: Path) -> None:
    from secretd.daemon.config import load_config

    from .conftest import REPO

    text = (REPO / "docs" / "configuration.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_short / "example.toml"
    path.write_text(example)
    config = load_config(path, required=True)
    assert sorted(config.secrets) == [
        "CI_DEPLOY_KEY", "DB_ADMIN_PASSWORD", "DB_PASSWORD", "GITHUB_TOKEN", "NPM_TOKEN", "OPENAI_API_KEY",
    ]
    assert config.secrets["GITHUB_TOKEN"].programs == ["git", "gh"]
