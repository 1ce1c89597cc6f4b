"""Static, environment, file and command sources, each failing by name without failing the others."""

from __future__ import annotations

import time
from pathlib import Path

from secretd.client import Client, CommandSource, EnvSource, FileSource, SecretSpec, StaticSource

from .conftest import Daemon, start_daemon


def test_each_source_kind(tmp_short: Path) -> None:
    value_file = tmp_short / "value.txt"
    value_file.write_text("Zq81-file-value-Xy77\n")
    daemon = start_daemon(tmp_short, env={"SD_TEST_ENV": "Zq81-env-value-Xy77"})
    try:
        with daemon.client() as client:
            client.update_secrets(None, [
                SecretSpec(name="STATIC", source=StaticSource(value="Zq81-static-value-Xy77")),
                SecretSpec(name="FROM_ENV", source=EnvSource(var="SD_TEST_ENV")),
                SecretSpec(name="FROM_FILE", source=FileSource(path=str(value_file))),
                SecretSpec(name="FROM_CMD", source=CommandSource(argv=["printf", "Zq81-cmd-value-Xy77\\n\\n"])),
            ])
            env = client.resolve_env(None, "x", all=True).env
            assert env == {
                "STATIC": "Zq81-static-value-Xy77",
                "FROM_ENV": "Zq81-env-value-Xy77",
                "FROM_FILE": "Zq81-file-value-Xy77",
                "FROM_CMD": "Zq81-cmd-value-Xy77\n",
            }
    finally:
        assert daemon.stop() == 0


def test_failures_reported_by_name(daemon: Daemon, client: Client, tmp_short: Path) -> None:
    client.update_secrets(None, [
        SecretSpec(name="GOOD", source=StaticSource(value="Zq81-good-value-Xy77")),
        SecretSpec(name="NO_ENV", source=EnvSource(var="SD_NOT_SET_ANYWHERE")),
        SecretSpec(name="NO_FILE", source=FileSource(path=str(tmp_short / "missing"))),
        SecretSpec(name="BAD_EXIT", source=CommandSource(argv=["sh", "-c", "echo Zq81-partial; exit 3"])),
        SecretSpec(name="NO_PROGRAM", source=CommandSource(argv=["/nonexistent/program"])),
        SecretSpec(name="HANGS", source=CommandSource(argv=["sleep", "30"], timeout=0.5)),
    ])
    result = client.resolve_env(None, "echo $GOOD $NO_ENV $NO_FILE $BAD_EXIT $NO_PROGRAM $HANGS")
    assert result.env == {"GOOD": "Zq81-good-value-Xy77"}
    assert "SD_NOT_SET_ANYWHERE" in result.errors["NO_ENV"]
    assert "missing" in result.errors["NO_FILE"]
    assert result.errors["BAD_EXIT"] == "command 'sh' exited with status 3; run it by hand to see its error"
    assert "/nonexistent/program" in result.errors["NO_PROGRAM"]
    assert result.errors["HANGS"] == "timed out after 0.5 s"
    states = {info.name: info for info in client.list_secrets()}
    assert states["HANGS"].state == "failed"
    assert states["GOOD"].state == "fresh"


def test_credentials_directory_file(tmp_short: Path) -> None:
    credentials = tmp_short / "creds"
    credentials.mkdir()
    (credentials / "db").write_text("Zq81-credential-Xy77")
    daemon = start_daemon(tmp_short, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    try:
        with daemon.client() as client:
            client.update_secrets(None, [SecretSpec(name="DB", source=FileSource(path="db"))])
            assert client.get_secret(None, "DB") == "Zq81-credential-Xy77"
    finally:
        assert daemon.stop() == 0


def test_config_file_secrets(tmp_short: Path) -> None:
    config = (
        '[secrets.CONFIGURED]\n'
        'description = "from the config file"\n'
        'source = { kind = "command", argv = ["echo", "Zq81-configured-Xy77"] }\n'
    )
    daemon = start_daemon(tmp_short, config=config)
    try:
        with daemon.client() as client:
            infos = client.list_secrets()
            assert [(i.name, i.description, i.source) for i in infos] == [
                ("CONFIGURED", "from the config file", "command")
            ]
            assert client.mask(None, b"v=Zq81-configured-Xy77") == b"v=<secret-hidden>"
    finally:
        assert daemon.stop() == 0


def test_command_with_background_child(client: Client, tmp_short: Path) -> None:
    marker = tmp_short / "child.pid"
    script = f"echo Zq81-forked-value-Xy77; sleep 30 & echo $! > {marker}; exit 0"
    client.update_secrets(None, [SecretSpec(name="FORKS", source=CommandSource(argv=["sh", "-c", script], timeout=5))])
    assert client.resolve_env(None, "echo $FORKS").env == {"FORKS": "Zq81-forked-value-Xy77"}
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the background child was left running"


def test_command_output_limit(client: Client) -> None:
    client.update_secrets(None, [SecretSpec(name="ENDLESS", source=CommandSource(argv=["yes"], timeout=20))])
    started = time.monotonic()
    result = client.resolve_env(None, "echo $ENDLESS")
    assert "produced more than" in result.errors["ENDLESS"]
    assert time.monotonic() - started < 10
