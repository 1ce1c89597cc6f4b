"""No secret value in the daemon's log, error messages, reprs or the environment of other commands."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from secretd.client import (
    Client,
    ClientSource,
    CommandSource,
    EnvSource,
    RemoteError,
    SecretSpec,
    StaticSource,
    run_command,
)
from secretd.protocol.messages import EnvResult

from .conftest import start_daemon

VALUES = {
    "STATIC_TOKEN": "Zq81-static-leak-check-Xy77",
    "SCRIPT_TOKEN": "Zq81-script-leak-check-Xy77",
    "CALLBACK_TOKEN": "Zq81-callback-leak-check-Xy77",
    "ROTATED": "Zq81-rotated-old-leak-Xy77",
}


def test_session_logs_no_value(tmp_short: Path) -> None:
    script = tmp_short / "print.sh"
    script.write_text(f"#!/bin/sh\necho {VALUES['SCRIPT_TOKEN']}\necho {VALUES['SCRIPT_TOKEN']} >&2\nexit 1\n")
    script.chmod(0o700)
    good_script = tmp_short / "good.sh"
    good_script.write_text(f"#!/bin/sh\necho {VALUES['SCRIPT_TOKEN']}\n")
    good_script.chmod(0o700)
    daemon = start_daemon(tmp_short)
    errors: list[str] = []
    with daemon.client() as client:
        client.register_source("cb", lambda name: VALUES["CALLBACK_TOKEN"])
        scope = client.open_scope("leaks")
        client.update_secrets(scope, [
            SecretSpec(name="STATIC_TOKEN", source=StaticSource(value=VALUES["STATIC_TOKEN"])),
            SecretSpec(name="SCRIPT_TOKEN", source=CommandSource(argv=[str(good_script)])),
            SecretSpec(name="FAILING", source=CommandSource(argv=[str(script)])),
            SecretSpec(name="CALLBACK_TOKEN", source=ClientSource(handle="cb")),
            SecretSpec(name="ROTATED", source=StaticSource(value=VALUES["ROTATED"])),
            SecretSpec(name="MISSING_ENV", source=EnvSource(var="SD_UNSET_FOR_LEAK_TEST")),
        ])
        client.update_secrets(scope, [SecretSpec(name="ROTATED", source=StaticSource(value="Zq81-rotated-new-Xy77"))])
        result = client.resolve_env(scope, "echo $STATIC_TOKEN $SCRIPT_TOKEN $FAILING $CALLBACK_TOKEN $MISSING_ENV")
        errors.extend(result.errors.values())
        errors.append(repr(result))
        errors.append(repr(client.list_secrets(scope)))
        for name in VALUES:
            client.get_secret(scope, name) if name != "ROTATED" else None
        for bad_call in (
            lambda: client.get_secret(scope, "FAILING"),
            lambda: client.call("secrets.update", scope, [{"name": "x y", "source": {"kind": "static", "value": VALUES["STATIC_TOKEN"]}}]),
            lambda: client.call("secrets.update", scope, [{"name": "OK", "source": {"kind": "static", "value": VALUES["STATIC_TOKEN"], "extra": 1}}]),
            lambda: client.call("mask", scope, 7),
        ):
            with pytest.raises(RemoteError) as error:
                bad_call()
            errors.append(str(error.value))
        command = run_command(client, scope, "echo $STATIC_TOKEN; env; echo $CALLBACK_TOKEN >&2")
        errors.append(command.output)
        with client.stream(scope) as stream:
            errors.append(stream.feed(VALUES["STATIC_TOKEN"].encode()[:5]).decode())
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.stop() == 0
    log = daemon.log_text()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e["event"] == "audit.resolution" for e in events)
    assert any(e["event"] == "source.failed" and e["secret"] == "FAILING" for e in events)
    for name, value in VALUES.items():
        assert value not in log, f"value of {name} in the daemon log"
        for text in errors:
            assert value not in text, f"value of {name} in {text[:80]!r}"


def test_reprs_hide_values() -> None:
    spec = SecretSpec(name="A", source=StaticSource(value=VALUES["STATIC_TOKEN"]))
    result = EnvResult(env={"A": VALUES["STATIC_TOKEN"]}, errors={})
    for text in (repr(spec), repr(spec.source), repr(result), str(result)):
        assert VALUES["STATIC_TOKEN"] not in text


def test_client_repr_and_errors_hide_values(client: Client) -> None:
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="A", source=StaticSource(value=VALUES["STATIC_TOKEN"]))])
    assert VALUES["STATIC_TOKEN"] not in repr(client)
