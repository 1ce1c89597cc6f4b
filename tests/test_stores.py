"""Dynamic sources against real stores: pass, gnome-keyring, an HTTP server and a Vault stand-in.

Every store runs on this machine. The HTTP servers listen on 127.0.0.1 only,
and no test sends anything to another address.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from secretd.client import (
    Client,
    CommandSource,
    HttpSource,
    SecretServiceSource,
    SecretSpec,
    SourceError,
    StaticSource,
    VaultSource,
)

from .conftest import Daemon, start_daemon, wait_for_socket
from .stores.loopback import LoopbackServer, Reply, Request, serve
from .stores.password_store import PasswordStore
from .stores.vault import FakeVault

PLACEHOLDER = b"<secret-hidden>"
KEYRING_SESSION = Path(__file__).resolve().parent / "stores" / "keyring_session.sh"


def _events(daemon: Daemon, name: str) -> list[dict[str, object]]:
    lines = (line for line in daemon.log_text().splitlines() if line.startswith("{"))
    return [event for event in map(json.loads, lines) if event["event"] == name]


def _assert_not_in_log(daemon: Daemon, *values: str) -> None:
    log = daemon.log_text()
    for value in values:
        assert value not in log, f"{value!r} appears in the daemon's log"


def _stop(daemon: Daemon) -> None:
    status = daemon.stop()
    assert status == 0, f"secretd exited with {status}; log:\n{daemon.log_text()[-4000:]}"


# --- pass -----------------------------------------------------------------------------------------

PASS_MULTILINE = "Zq81-pass-first-line-Xy77\nZq81-pass-second-line-Xy77"
PASS_ONE_LINE = "Zq81-pass-one-line-Xy77"


@pytest.fixture
def pass_daemon(tmp_short: Path) -> Iterator[Daemon]:
    """A daemon whose GNUPGHOME and PASSWORD_STORE_DIR point to a throwaway store with entries x/y and x/one."""
    for program in ("pass", "gpg", "gpgconf"):
        if shutil.which(program) is None:
            pytest.skip(f"{program!r} is not installed; the pass tests need pass and GnuPG")
    store = PasswordStore(tmp_short)
    try:
        store.insert("x/y", PASS_MULTILINE + "\n")
        store.insert("x/one", PASS_ONE_LINE + "\n")
        daemon = start_daemon(tmp_short, env=store.env)
        try:
            yield daemon
        finally:
            _stop(daemon)
    finally:
        store.close()


def test_pass_entries_resolve(pass_daemon: Daemon) -> None:
    with pass_daemon.client() as client:
        client.update_secrets(None, [
            SecretSpec(name="PASS_MULTI", source=CommandSource(argv=["pass", "show", "x/y"])),
            SecretSpec(name="PASS_ONE", source=CommandSource(argv=["pass", "show", "x/one"])),
        ])
        result = client.resolve_env(None, "deploy --user $PASS_ONE --key ${PASS_MULTI}")
    assert result.errors == {}
    assert result.env["PASS_MULTI"] == PASS_MULTILINE
    assert result.env["PASS_ONE"] == PASS_ONE_LINE


def test_pass_values_masked(pass_daemon: Daemon) -> None:
    with pass_daemon.client() as client:
        client.update_secrets(None, [
            SecretSpec(name="PASS_MULTI", source=CommandSource(argv=["pass", "show", "x/y"])),
            SecretSpec(name="PASS_ONE", source=CommandSource(argv=["pass", "show", "x/one"])),
        ])
        one_line = client.mask(None, f"token={PASS_ONE_LINE} ok\n".encode())
        multi_line = client.mask(None, f"key:\n{PASS_MULTILINE}\nend\n".encode())
    assert one_line == b"token=" + PLACEHOLDER + b" ok\n"
    assert b"Zq81-pass-first-line-Xy77" not in multi_line
    assert b"Zq81-pass-second-line-Xy77" not in multi_line
    assert PLACEHOLDER in multi_line
    _assert_not_in_log(pass_daemon, PASS_ONE_LINE, "Zq81-pass-first-line-Xy77", "Zq81-pass-second-line-Xy77")


def test_pass_missing_entry_fails_by_name(pass_daemon: Daemon) -> None:
    with pass_daemon.client() as client:
        client.update_secrets(None, [
            SecretSpec(name="PASS_ONE", source=CommandSource(argv=["pass", "show", "x/one"])),
            SecretSpec(name="PASS_MISSING", source=CommandSource(argv=["pass", "show", "x/missing"])),
            SecretSpec(name="STATIC", source=StaticSource(value="Zq81-static-beside-pass-Xy77")),
        ])
        result = client.resolve_env(None, "echo $PASS_ONE $PASS_MISSING $STATIC")
    assert result.env == {"PASS_ONE": PASS_ONE_LINE, "STATIC": "Zq81-static-beside-pass-Xy77"}
    assert result.errors == {"PASS_MISSING": "command 'pass' exited with status 1; run it by hand to see its error"}


# --- gnome-keyring (Secret Service) ---------------------------------------------------------------

KEYRING_VALUE = "Zq81-keyring-item-Xy77"


@dataclass
class SessionDaemon(Daemon):
    """secretd started by ``keyring_session.sh`` under ``dbus-run-session``, which is ``process``."""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        # Signal secretd itself, because dbus-run-session 1.14 does not pass SIGTERM on to its child.
        # dbus-run-session then exits with secretd's status.
        if self.process.poll() is None:
            os.kill(int((self.directory / "command.pid").read_text()), sig)
        return self.process.wait(timeout)


def _end_keyring(directory: Path) -> None:
    """Stop the gnome-keyring-daemon of this session if it outlived the session's bus."""
    pid_file = directory / "gnome-keyring.pid"
    found = re.search(r"\d+", pid_file.read_text()) if pid_file.exists() else None
    if found is None:
        return
    pid = int(found.group())
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return  # already gone
    if b"gnome-keyring-daemon" in command and state != "Z":
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def keyring_daemon(tmp_short: Path) -> Iterator[Daemon]:
    """A daemon on a private D-Bus session bus whose unlocked gnome-keyring contains one item."""
    for program in ("dbus-run-session", "gnome-keyring-daemon", "secret-tool", "gdbus"):
        if shutil.which(program) is None:
            pytest.skip(f"{program!r} is not installed; the Secret Service tests need gnome-keyring under D-Bus")

    value_file = tmp_short / "item-value"
    value_file.write_text(KEYRING_VALUE)
    value_file.chmod(0o600)
    socket_path = tmp_short / "run" / "secretd.sock"
    log_path = tmp_short / "secretd.log"
    argv = ["dbus-run-session", "--", "/bin/sh", str(KEYRING_SESSION), str(tmp_short),
            sys.executable, "-m", "secretd.daemon", "--socket", str(socket_path),
            "--log-format", "json", "--log-level", "debug"]
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_short / "config-home")}
    env.pop("NOTIFY_SOCKET", None)

    # A process group of its own, so that a failed start can be ended without knowing each pid.
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    daemon = SessionDaemon(socket_path, log_path, process, tmp_short, env)
    try:
        try:
            wait_for_socket(socket_path, process, timeout=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; log:\n{daemon.log_text()[-4000:]}") from None
        value_file.unlink()
        yield daemon
        _stop(daemon)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)
        _end_keyring(tmp_short)


def test_secret_service_item_resolves_and_masks(keyring_daemon: Daemon) -> None:
    with keyring_daemon.client() as client:
        client.update_secrets(None, [
            SecretSpec(name="KEYRING", source=SecretServiceSource(
                attributes={"service": "secretd-test", "user": "alice"})),
        ])
        result = client.resolve_env(None, "echo $KEYRING")
        masked = client.mask(None, f"password: {KEYRING_VALUE}\n".encode())
    assert result.errors == {}
    assert result.env == {"KEYRING": KEYRING_VALUE}
    assert masked == b"password: " + PLACEHOLDER + b"\n"
    _assert_not_in_log(keyring_daemon, KEYRING_VALUE)


def test_secret_service_no_match_fails_by_name(keyring_daemon: Daemon) -> None:
    with keyring_daemon.client() as client:
        client.update_secrets(None, [
            SecretSpec(name="KEYRING", source=SecretServiceSource(
                attributes={"service": "secretd-test", "user": "alice"})),
            SecretSpec(name="NO_ITEM", source=SecretServiceSource(
                attributes={"service": "secretd-test", "user": "mallory"})),
        ])
        result = client.resolve_env(None, "echo $KEYRING $NO_ITEM")
    assert result.env == {"KEYRING": KEYRING_VALUE}
    assert result.errors["NO_ITEM"].startswith("no Secret Service item matches")
    assert "mallory" not in result.errors["NO_ITEM"]


# --- HTTP -----------------------------------------------------------------------------------------

HTTP_TOKEN = "Zq81-http-bearer-token-Xy77"
HTTP_JSON = {"a": {"b": "Zq81-http-nested-Xy77", "n": 7}, "top": "Zq81-http-top-Xy77"}


def _http_route(request: Request) -> Reply:
    if request.path == "/plain":
        return Reply(200, b"Zq81-http-plain-Xy77\n")
    if request.path == "/two-newlines":
        return Reply(200, b"Zq81-http-two-newlines-Xy77\n\n")
    if request.path == "/json":
        return Reply(200, json.dumps(HTTP_JSON).encode(), content_type="application/json")
    if request.path == "/needs-header":
        if request.headers.get("authorization") != f"Bearer {HTTP_TOKEN}":
            return Reply(401, b"missing or wrong token")
        return Reply(200, b"Zq81-http-behind-header-Xy77")
    if request.path == "/fails":
        return Reply(500, b"internal server error")
    if request.path == "/slow":
        return Reply(200, b"Zq81-http-too-late-Xy77", delay=10)
    if request.path == "/counted":
        return Reply(200, b"Zq81-http-counted-Xy77")
    return Reply(404, b"not found")


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    with serve(_http_route) as server:
        yield server


def _closed_port() -> int:
    """Return a loopback port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_http_body_drops_one_newline(client: Client, http_server: LoopbackServer) -> None:
    base = http_server.base_url
    client.update_secrets(None, [
        SecretSpec(name="PLAIN", source=HttpSource(url=f"{base}/plain")),
        SecretSpec(name="TWO_NEWLINES", source=HttpSource(url=f"{base}/two-newlines")),
    ])
    result = client.resolve_env(None, "echo $PLAIN $TWO_NEWLINES")
    assert result.errors == {}
    assert result.env["PLAIN"] == "Zq81-http-plain-Xy77"
    assert result.env["TWO_NEWLINES"] == "Zq81-http-two-newlines-Xy77\n"


def test_http_json_field(client: Client, http_server: LoopbackServer) -> None:
    url = f"{http_server.base_url}/json"
    client.update_secrets(None, [
        SecretSpec(name="NESTED", source=HttpSource(url=url, json_field="a.b")),
        SecretSpec(name="TOP", source=HttpSource(url=url, json_field="top")),
        SecretSpec(name="ABSENT", source=HttpSource(url=url, json_field="a.missing")),
        SecretSpec(name="NUMBER", source=HttpSource(url=url, json_field="a.n")),
        SecretSpec(name="NOT_JSON", source=HttpSource(url=f"{http_server.base_url}/plain", json_field="a")),
    ])
    result = client.resolve_env(None, "echo $NESTED $TOP $ABSENT $NUMBER $NOT_JSON")
    lookup = f"HTTP lookup of {http_server.base_url}"
    assert result.env == {"NESTED": "Zq81-http-nested-Xy77", "TOP": "Zq81-http-top-Xy77"}
    assert result.errors["ABSENT"] == f"{lookup}/json: JSON field 'a.missing' not found"
    assert result.errors["NUMBER"] == f"{lookup}/json: JSON field 'a.n' is not a string"
    assert result.errors["NOT_JSON"] == f"{lookup}/plain did not return JSON"


def test_http_headers_sent(client: Client, http_server: LoopbackServer) -> None:
    url = f"{http_server.base_url}/needs-header"
    client.update_secrets(None, [
        SecretSpec(name="WITH_HEADER", source=HttpSource(
            url=url, headers={"Authorization": f"Bearer {HTTP_TOKEN}", "X-Request-Source": "secretd-test"})),
        SecretSpec(name="WITHOUT_HEADER", source=HttpSource(url=url)),
    ])
    result = client.resolve_env(None, "echo $WITH_HEADER $WITHOUT_HEADER")
    assert result.env == {"WITH_HEADER": "Zq81-http-behind-header-Xy77"}
    assert result.errors == {"WITHOUT_HEADER": f"HTTP lookup of {url} returned HTTP status 401"}
    sent = [request.headers for request in http_server.requests if "x-request-source" in request.headers]
    assert len(sent) == 1
    assert sent[0]["authorization"] == f"Bearer {HTTP_TOKEN}"
    assert sent[0]["x-request-source"] == "secretd-test"


def test_http_value_masked(daemon: Daemon, client: Client, http_server: LoopbackServer) -> None:
    client.update_secrets(None, [SecretSpec(name="PLAIN", source=HttpSource(url=f"{http_server.base_url}/plain"))])
    assert client.resolve_env(None, "echo $PLAIN").env == {"PLAIN": "Zq81-http-plain-Xy77"}
    assert client.mask(None, b"got Zq81-http-plain-Xy77.") == b"got " + PLACEHOLDER + b"."
    _assert_not_in_log(daemon, "Zq81-http-plain-Xy77")


def test_http_failures_by_status_and_timeout(client: Client, http_server: LoopbackServer) -> None:
    base = http_server.base_url
    refused = f"http://127.0.0.1:{_closed_port()}/value"
    client.update_secrets(None, [
        SecretSpec(name="SERVER_ERROR", source=HttpSource(url=f"{base}/fails")),
        SecretSpec(name="NOT_FOUND", source=HttpSource(url=f"{base}/no-such-path")),
        SecretSpec(name="SLOW", source=HttpSource(url=f"{base}/slow", timeout=0.5)),
        SecretSpec(name="REFUSED", source=HttpSource(url=refused)),
        SecretSpec(name="GOOD", source=HttpSource(url=f"{base}/plain")),
    ])
    result = client.resolve_env(None, "echo $SERVER_ERROR $NOT_FOUND $SLOW $REFUSED $GOOD")
    assert result.env == {"GOOD": "Zq81-http-plain-Xy77"}
    assert result.errors["SERVER_ERROR"] == f"HTTP lookup of {base}/fails returned HTTP status 500"
    assert result.errors["NOT_FOUND"] == f"HTTP lookup of {base}/no-such-path returned HTTP status 404"
    assert result.errors["SLOW"] == "timed out after 0.5 s"
    assert result.errors["REFUSED"] == f"HTTP lookup of {refused} failed: ConnectError"
    assert http_server.count("/slow") == 1


def test_http_url_credentials_never_reported(daemon: Daemon, client: Client, http_server: LoopbackServer) -> None:
    host = http_server.base_url.removeprefix("http://")
    password = "Zq81-userinfo-password-Xy77"
    query_token = "Zq81-query-token-Xy77"
    refused_host = f"127.0.0.1:{_closed_port()}"
    client.update_secrets(None, [
        SecretSpec(name="STATUS", source=HttpSource(url=f"http://alice:{password}@{host}/fails?token={query_token}")),
        SecretSpec(name="TIMEOUT", source=HttpSource(
            url=f"http://alice:{password}@{host}/slow?token={query_token}", timeout=0.5)),
        SecretSpec(name="REFUSED", source=HttpSource(url=f"http://alice:{password}@{refused_host}/x?token={query_token}")),
        SecretSpec(name="BAD_FIELD", source=HttpSource(
            url=f"http://alice:{password}@{host}/json?token={query_token}", json_field="nope")),
    ])
    result = client.resolve_env(None, "echo $STATUS $TIMEOUT $REFUSED $BAD_FIELD")
    assert set(result.errors) == {"STATUS", "TIMEOUT", "REFUSED", "BAD_FIELD"}
    assert result.errors["STATUS"] == f"HTTP lookup of http://{host}/fails returned HTTP status 500"
    assert result.errors["REFUSED"] == f"HTTP lookup of http://{refused_host}/x failed: ConnectError"
    assert result.errors["BAD_FIELD"] == f"HTTP lookup of http://{host}/json: JSON field 'nope' not found"
    for name, reason in result.errors.items():
        assert password not in reason, name
        assert query_token not in reason, name
        assert "alice" not in reason, name
    # The credentials did reach the server, so their absence above is not for want of use.
    assert any(request.query == f"token={query_token}" for request in http_server.requests)
    assert any(request.headers.get("authorization", "").startswith("Basic ") for request in http_server.requests)
    with pytest.raises(SourceError, match="HTTP status 500") as caught:
        client.get_secret(None, "STATUS")
    assert password not in str(caught.value)
    assert query_token not in str(caught.value)
    _assert_not_in_log(daemon, password, query_token, "alice:")


def test_http_ttl_fetches_once(daemon: Daemon, client: Client, http_server: LoopbackServer) -> None:
    client.update_secrets(None, [
        SecretSpec(name="CACHED", source=HttpSource(url=f"{http_server.base_url}/counted", ttl=60)),
    ])
    for _ in range(3):
        assert client.resolve_env(None, "echo $CACHED").env == {"CACHED": "Zq81-http-counted-Xy77"}
    assert http_server.count("/counted") == 1
    decisions = [event["decisions"] for event in _events(daemon, "audit.resolution")]
    assert decisions == [
        {"CACHED": "injected (miss)"},
        {"CACHED": "injected (hit)"},
        {"CACHED": "injected (hit)"},
    ]


def test_http_zero_ttl_fetches_every_time(daemon: Daemon, client: Client, http_server: LoopbackServer) -> None:
    client.update_secrets(None, [
        SecretSpec(name="UNCACHED", source=HttpSource(url=f"{http_server.base_url}/counted", ttl=0)),
    ])
    for _ in range(3):
        assert client.resolve_env(None, "echo $UNCACHED").env == {"UNCACHED": "Zq81-http-counted-Xy77"}
    assert http_server.count("/counted") == 3
    decisions = [event["decisions"] for event in _events(daemon, "audit.resolution")]
    assert decisions == [{"UNCACHED": "injected (miss)"}] * 3


# --- Vault KV version 2 ---------------------------------------------------------------------------

VAULT_TOKEN = "Zq81-vault-token-Xy77"
VAULT_DATA = {
    "password": "Zq81-vault-password-Xy77",
    "username": "Zq81-vault-username-Xy77",
    "tls.crt": "Zq81-vault-dotted-field-Xy77",
}


@pytest.fixture
def vault_server() -> Iterator[LoopbackServer]:
    """A loopback server that serves Vault's KV version 2 reads of secret/app/db and kv/team/api.

    It stands in for HashiCorp Vault, because no Vault server can be installed
    on the test machines; ``tests/stores/vault.py`` lists what it implements.
    """
    vault = FakeVault(token=VAULT_TOKEN)
    vault.put("secret", "app/db", VAULT_DATA)
    vault.put("kv", "team/api", {"key": "Zq81-vault-other-mount-Xy77"})
    with serve(vault.route) as server:
        yield server


@pytest.fixture
def token_file(tmp_short: Path) -> Path:
    path = tmp_short / "vault-token"
    path.write_text(VAULT_TOKEN + "\n")
    path.chmod(0o600)
    return path


def test_vault_token_from_file(daemon: Daemon, client: Client, vault_server: LoopbackServer, token_file: Path) -> None:
    """Read KV version 2 fields with the token in a file, from a stand-in server (no Vault can be installed here)."""
    address = vault_server.base_url
    client.update_secrets(None, [
        SecretSpec(name="DB_PASSWORD", source=VaultSource(
            address=address, path="app/db", field="password", token_file=str(token_file))),
        SecretSpec(name="API_KEY", source=VaultSource(
            address=address + "/", mount="kv", path="/team/api", field="key", token_file=str(token_file))),
    ])
    result = client.resolve_env(None, "psql -p $DB_PASSWORD; curl -H $API_KEY")
    assert result.errors == {}
    assert result.env == {"DB_PASSWORD": "Zq81-vault-password-Xy77", "API_KEY": "Zq81-vault-other-mount-Xy77"}
    assert {request.path for request in vault_server.requests} == {"/v1/secret/data/app/db", "/v1/kv/data/team/api"}
    assert all(request.headers["x-vault-token"] == VAULT_TOKEN for request in vault_server.requests)
    assert client.mask(None, b"pw=Zq81-vault-password-Xy77") == b"pw=" + PLACEHOLDER
    _assert_not_in_log(daemon, VAULT_TOKEN, "Zq81-vault-password-Xy77", "Zq81-vault-other-mount-Xy77")


def test_vault_token_from_env(tmp_short: Path, vault_server: LoopbackServer) -> None:
    """Read a KV version 2 field with the token in the daemon's environment, from the stand-in server."""
    daemon = start_daemon(tmp_short, env={"SD_TEST_VAULT_TOKEN": VAULT_TOKEN, "VAULT_TOKEN": "Zq81-wrong-Xy77"})
    try:
        with daemon.client() as client:
            client.update_secrets(None, [
                SecretSpec(name="DB_USER", source=VaultSource(
                    address=vault_server.base_url, path="app/db", field="username", token_env="SD_TEST_VAULT_TOKEN")),
                SecretSpec(name="DEFAULT_ENV", source=VaultSource(
                    address=vault_server.base_url, path="app/db", field="username")),
                SecretSpec(name="UNSET_ENV", source=VaultSource(
                    address=vault_server.base_url, path="app/db", field="username", token_env="SD_TEST_UNSET")),
            ])
            result = client.resolve_env(None, "echo $DB_USER $DEFAULT_ENV $UNSET_ENV")
        assert result.env == {"DB_USER": "Zq81-vault-username-Xy77"}
        # VAULT_TOKEN, the default variable, contains a token that the server rejects.
        assert result.errors["DEFAULT_ENV"] == "Vault read of secret/app/db returned HTTP status 403"
        assert "SD_TEST_UNSET" in result.errors["UNSET_ENV"]
        _assert_not_in_log(daemon, VAULT_TOKEN, "Zq81-wrong-Xy77", "Zq81-vault-username-Xy77")
    finally:
        _stop(daemon)


def test_vault_failures_by_name(client: Client, vault_server: LoopbackServer, tmp_short: Path, token_file: Path) -> None:
    """Wrong token, unknown path, missing field and unreadable token file, against the stand-in server."""
    wrong_token = tmp_short / "wrong-token"
    wrong_token.write_text("Zq81-not-the-token-Xy77")
    address = vault_server.base_url
    client.update_secrets(None, [
        SecretSpec(name="WRONG_TOKEN", source=VaultSource(
            address=address, path="app/db", field="password", token_file=str(wrong_token))),
        SecretSpec(name="NO_PATH", source=VaultSource(
            address=address, path="app/none", field="password", token_file=str(token_file))),
        SecretSpec(name="NO_FIELD", source=VaultSource(
            address=address, path="app/db", field="pasword", token_file=str(token_file))),
        SecretSpec(name="NO_TOKEN_FILE", source=VaultSource(
            address=address, path="app/db", field="password", token_file=str(tmp_short / "absent"))),
        SecretSpec(name="GOOD", source=VaultSource(
            address=address, path="app/db", field="password", token_file=str(token_file))),
    ])
    result = client.resolve_env(None, "echo $WRONG_TOKEN $NO_PATH $NO_FIELD $NO_TOKEN_FILE $GOOD")
    assert result.env == {"GOOD": "Zq81-vault-password-Xy77"}
    assert result.errors["WRONG_TOKEN"] == "Vault read of secret/app/db returned HTTP status 403"
    assert result.errors["NO_PATH"] == "Vault read of secret/app/none returned HTTP status 404"
    assert result.errors["NO_FIELD"] == "Vault read of secret/app/db: field 'pasword' not found"
    assert "absent" in result.errors["NO_TOKEN_FILE"]
    assert "No such file" in result.errors["NO_TOKEN_FILE"]
    for reason in result.errors.values():
        assert "Zq81-" not in reason


def test_vault_field_name_with_dot(client: Client, vault_server: LoopbackServer, token_file: Path) -> None:
    """A KV field name may contain dots ("tls.crt"); it names one key, not a path into the data."""
    client.update_secrets(None, [
        SecretSpec(name="CERT", source=VaultSource(
            address=vault_server.base_url, path="app/db", field="tls.crt", token_file=str(token_file))),
    ])
    result = client.resolve_env(None, "echo $CERT")
    assert result.errors == {}
    assert result.env == {"CERT": "Zq81-vault-dotted-field-Xy77"}


# --- audit ----------------------------------------------------------------------------------------


def test_audit_names_peer_scope_and_outcome(
    daemon: Daemon, client: Client, http_server: LoopbackServer, vault_server: LoopbackServer, token_file: Path
) -> None:
    scope = client.open_scope("audit-test")
    client.update_secrets(scope, [
        SecretSpec(name="CACHED", source=HttpSource(url=f"{http_server.base_url}/counted", ttl=60)),
        SecretSpec(name="BROKEN", source=HttpSource(url=f"{http_server.base_url}/fails")),
        SecretSpec(name="VAULTED", source=VaultSource(
            address=vault_server.base_url, path="app/db", field="password", token_file=str(token_file))),
    ])
    client.update_secrets(None, [SecretSpec(name="GLOBAL_ONE", source=StaticSource(value="Zq81-global-Xy77"))])
    client.resolve_env(scope, "echo $CACHED $BROKEN $VAULTED")
    client.resolve_env(scope, "echo $CACHED $BROKEN $GLOBAL_ONE")
    assert client.get_secret(scope, "CACHED") == "Zq81-http-counted-Xy77"
    client.resolve_env(None, "echo $GLOBAL_ONE")

    events = _events(daemon, "audit.resolution")
    assert [(event["action"], event["decisions"]) for event in events] == [
        ("env.resolve", {"CACHED": "injected (miss)", "BROKEN": "failed", "VAULTED": "injected (miss)"}),
        ("env.resolve", {"CACHED": "injected (hit)", "BROKEN": "failed", "GLOBAL_ONE": "injected (static)"}),
        ("get", {"CACHED": "hit"}),
        ("env.resolve", {"GLOBAL_ONE": "injected (static)"}),
    ]
    for event in events:
        assert event["peer_pid"] == os.getpid()
        assert event["peer_uid"] == os.getuid()
    conversation_refs = {event["scope"] for event in events[:3]}
    assert len(conversation_refs) == 1
    assert str(conversation_refs.pop()).startswith("conv-")
    assert events[3]["scope"] == "global"

    _assert_not_in_log(
        daemon, scope, VAULT_TOKEN, "Zq81-http-counted-Xy77", "Zq81-vault-password-Xy77", "Zq81-global-Xy77",
    )
