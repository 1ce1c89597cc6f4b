"""The async client under asyncio and trio, and the blocking client, against a real daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from secretd.client import (
    AsyncClient,
    Client,
    ClientSource,
    Conversation,
    DaemonNotRunning,
    EnvSource,
    NotFoundError,
    SecretSpec,
    StaticSource,
)
from secretd.protocol import PROTOCOL_VERSION
from secretd.protocol.errors import ErrorCode, RemoteError
from secretd.protocol.framing import SEND_BUFFER

from .conftest import Daemon, start_daemon

TOKEN = "ghp_Zq81Xy77Lm44Kj22Hg00Fd99"


def _spec(name: str, value: str) -> SecretSpec:
    return SecretSpec(name=name, source=StaticSource(value=value), description=f"{name} for tests")


async def test_async_client_roundtrip(daemon: Daemon) -> None:
    async with AsyncClient.connect(daemon.socket_path) as client:
        assert client.hello.protocol == PROTOCOL_VERSION
        scope = await client.open_scope("async")
        result = await client.update_secrets(scope, [_spec("GITHUB_TOKEN", TOKEN), _spec("PIN", "123")])
        assert result.too_short == ["PIN"]
        env = await client.resolve_env(scope, "git push https://x:$GITHUB_TOKEN@example.invalid")
        assert env.env == {"GITHUB_TOKEN": TOKEN}
        assert await client.mask(scope, f"token={TOKEN}\n".encode()) == b"token=<secret-hidden>\n"
        stream = await client.open_stream(scope)
        out = await stream.feed(TOKEN[:10].encode())
        out += await stream.feed(TOKEN[10:].encode() + b" done")
        out += await stream.close()
        assert out == b"<secret-hidden> done"
        names = [info.name for info in await client.list_secrets(scope)]
        assert names == ["GITHUB_TOKEN", "PIN"]


async def test_async_client_serves_client_held_source(daemon: Daemon) -> None:
    calls: list[str] = []

    def lookup(name: str) -> str:
        calls.append(name)
        return "Zq81-callback-value-Xy77"

    async with AsyncClient.connect(daemon.socket_path) as client:
        client.register_source("h1", lookup)
        scope = await client.open_scope()
        await client.update_secrets(scope, [SecretSpec(name="CB", source=ClientSource(handle="h1"))])
        env = await client.resolve_env(scope, "echo $CB")
        assert env.env == {"CB": "Zq81-callback-value-Xy77"}
        assert calls == ["CB"]


def test_blocking_client_serves_client_held_source(client: Client) -> None:
    client.register_source("h2", lambda name: f"Zq81-{name}-value-Xy77")
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="CB", source=ClientSource(handle="h2"))])
    assert client.resolve_env(scope, "echo $CB").env == {"CB": "Zq81-CB-value-Xy77"}
    assert client.mask(scope, b"x Zq81-CB-value-Xy77 y") == b"x <secret-hidden> y"


def test_client_held_source_that_raises_fails_cleanly(client: Client) -> None:
    def broken(name: str) -> str:
        raise RuntimeError("Zq81-never-sent-Xy77")

    client.register_source("h3", broken)
    scope = client.open_scope()
    client.update_secrets(scope, [SecretSpec(name="CB", source=ClientSource(handle="h3")), _spec("OK", TOKEN)])
    result = client.resolve_env(scope, "echo $CB $OK")
    assert result.env == {"OK": TOKEN}
    assert "RuntimeError" in result.errors["CB"]
    assert "Zq81-never-sent-Xy77" not in result.errors["CB"]


def test_client_held_source_of_gone_client_fails(daemon: Daemon, client: Client) -> None:
    owner = daemon.client()
    owner.register_source("h4", lambda name: "Zq81-owner-value-Xy77")
    scope = owner.open_scope(keep=True)
    owner.update_secrets(scope, [SecretSpec(name="CB", source=ClientSource(handle="h4", timeout=2))])
    owner.close()
    result = client.resolve_env(scope, "echo $CB")
    assert result.env == {}
    assert "disconnected" in result.errors["CB"]


def test_scope_isolation(daemon: Daemon, client: Client) -> None:
    first = client.open_scope("first")
    second = client.open_scope("second")
    client.update_secrets(first, [_spec("ONLY_FIRST", TOKEN)])
    assert client.resolve_env(second, "echo $ONLY_FIRST").env == {}
    assert client.mask(second, TOKEN.encode()) == TOKEN.encode()
    with pytest.raises(NotFoundError) as error:
        client.mask("not-a-scope-id", b"x")
    assert error.value.code == ErrorCode.SCOPE_NOT_FOUND


def test_global_secrets_visible_in_scopes(client: Client) -> None:
    client.update_secrets(None, [_spec("SHARED", TOKEN)])
    scope = client.open_scope()
    assert client.resolve_env(scope, "echo ${SHARED}").env == {"SHARED": TOKEN}
    assert client.mask(scope, TOKEN.encode()) == b"<secret-hidden>"


def test_scope_closes_with_its_connection(daemon: Daemon, client: Client) -> None:
    other = daemon.client()
    scope = other.open_scope()
    kept = other.open_scope(keep=True)
    other.close()
    deadline = time.monotonic() + 5  # the daemon closes the scope once it sees the disconnect
    while client.status().scopes > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(NotFoundError):
        client.mask(scope, b"x")
    assert client.mask(kept, b"x") == b"x"


def test_rotated_and_removed_values_stay_masked(client: Client) -> None:
    scope = client.open_scope()
    client.update_secrets(scope, [_spec("ROT", "old-Zq81-value-2025")])
    client.update_secrets(scope, [_spec("ROT", "new-Zq81-value-2026")])
    client.remove_secrets(scope, ["ROT"])
    assert client.mask(scope, b"old-Zq81-value-2025 new-Zq81-value-2026") == b"<secret-hidden> <secret-hidden>"
    assert client.resolve_env(scope, "echo $ROT").env == {}


def test_get_and_errors(client: Client) -> None:
    client.update_secrets(None, [_spec("A", TOKEN), SecretSpec(name="MISSING", source=EnvSource(var="NO_SUCH_VAR_ZQ"))])
    assert client.get_secret(None, "A") == TOKEN
    with pytest.raises(NotFoundError, match="no secret named 'NOPE'"):
        client.get_secret(None, "NOPE")
    with pytest.raises(RemoteError, match="NO_SUCH_VAR_ZQ"):
        client.get_secret(None, "MISSING")


def test_version_mismatch_rejected(client: Client) -> None:
    with pytest.raises(RemoteError) as error:
        client.call("hello", PROTOCOL_VERSION + 1, "future")
    assert error.value.code == ErrorCode.UNSUPPORTED_VERSION


def test_daemon_not_running_error(tmp_short) -> None:  # type: ignore[no-untyped-def]
    path = tmp_short / "none.sock"
    with pytest.raises(DaemonNotRunning) as error:
        Client(path)
    assert str(path) in str(error.value)
    assert "Start it with 'secretd'" in str(error.value)


def test_conversation_survives_daemon_restart(tmp_short) -> None:  # type: ignore[no-untyped-def]
    daemon = start_daemon(tmp_short)
    conversation = Conversation(socket_path=daemon.socket_path, label="restart")
    conversation.update({"API_KEY": "Zq81-before-restart-Xy77"})
    conversation.update({"API_KEY": "Zq81-after-rotation-Xy77"})
    first_instance = conversation.client.instance_id
    assert daemon.stop() == 0
    daemon = start_daemon(tmp_short)
    try:
        assert conversation.resolve_env("echo $API_KEY").env == {"API_KEY": "Zq81-after-rotation-Xy77"}
        assert conversation.client.instance_id != first_instance
        masked = conversation.mask(b"Zq81-before-restart-Xy77 Zq81-after-rotation-Xy77")
        assert masked == b"<secret-hidden> <secret-hidden>"
    finally:
        conversation.client.close()
        assert daemon.stop() == 0


def test_kept_scope_expires_when_abandoned(tmp_short) -> None:  # type: ignore[no-untyped-def]
    daemon = start_daemon(tmp_short, config="[daemon]\norphan_scope_ttl = 0.5\n")
    try:
        owner = daemon.client()
        kept = owner.open_scope(keep=True)
        owner.close()
        with daemon.client() as other:
            for _ in range(3):  # each use renews the idle lifetime
                time.sleep(0.3)
                assert other.mask(kept, b"x") == b"x"
            time.sleep(0.7)
            with pytest.raises(NotFoundError):
                other.mask(kept, b"x")
            assert other.status().scopes == 0
    finally:
        assert daemon.stop() == 0


def _send_buffers(*words: str) -> list[int]:
    """Return the send buffer sizes that `ss` reports for connected Unix sockets whose line contains `words`."""
    listing = subprocess.run(["ss", "-x", "-m", "-p", "-H", "state", "established"],
                             capture_output=True, text=True, check=True).stdout
    return [int(match) for line in listing.splitlines() if all(word in line for word in words)
            for match in re.findall(r"\btb(\d+)", line)]


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_both_ends_widen_send_buffer(daemon: Daemon, client: Client) -> None:
    # Linux doubles the size asked for and caps it at net.core.wmem_max.
    wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
    expected = 2 * min(SEND_BUFFER, wmem_max)
    assert client.status().connections >= 1
    assert _send_buffers(f"pid={os.getpid()},") == [expected]
    # The daemon's end of the connection is the one bound to its socket path.
    assert _send_buffers(f"pid={daemon.process.pid},", str(daemon.socket_path)) == [expected]
