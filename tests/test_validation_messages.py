"""Config and request validation errors name what to fix, and never quote a value."""

from __future__ import annotations

import socket
from pathlib import Path

import msgpack
import msgspec
import pytest

from secretd.client import Client, RemoteError
from secretd.daemon.config import ConfigError, load_config
from secretd.daemon.errors import safe_validation_message
from secretd.protocol.errors import ErrorCode
from secretd.protocol.messages import UpdateParams

from .conftest import Daemon, start_daemon

PASTED = "Zq81-pasted-in-config-Xy77"
KINDS = "client, command, env, file, http, secret_service, static, vault"


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, required=True)
    message = str(error.value)
    prefix = f"invalid config file {str(path)!r}: "
    assert message.startswith(prefix), message
    return message[len(prefix):]


def twenty_secrets() -> str:
    return "".join(f'[secrets.TOKEN_{n}]\nsource = {{ kind = "env", var = "TOKEN_{n}" }}\n' for n in range(20))


def test_config_unknown_source_kind(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[secrets.MY_TOKEN]\nsource = { kind = "comand", argv = ["pass", "show", "x"] }\n')
    assert message == f"$.secrets.MY_TOKEN.source.kind: unknown source kind 'comand'; expected one of {KINDS}"


def test_config_invalid_secret_name(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[secrets.bad-name]\nsource = { kind = "env", var = "X" }\n')
    assert message == "$.secrets: invalid secret name 'bad-name'; a name must match ^[A-Za-z_][A-Za-z0-9_]*$"


def test_config_secret_name_too_long(tmp_path: Path) -> None:
    message = config_error(tmp_path, f'[secrets.{"A" * 300}]\nsource = {{ kind = "env", var = "X" }}\n')
    assert message == "$.secrets: invalid secret name of 300 characters; expected `str` of length <= 256"


def test_config_invalid_reference_mode(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[daemon]\nreference_mode = "words"\n')
    assert message == "$.daemon.reference_mode: invalid value 'words'; expected one of 'word', 'shell', 'substring'"


def test_config_invalid_inject(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[secrets.A]\nsource = { kind = "env", var = "X" }\ninject = "sometimes"\n')
    assert message == "$.secrets.A.inject: invalid value 'sometimes'; expected one of 'referenced', 'always', 'never'"


def test_config_argv_string_names_secret(tmp_path: Path) -> None:
    text = twenty_secrets() + '[secrets.PASS_TOKEN]\nsource = { kind = "command", argv = "pass show x" }\n'
    message = config_error(tmp_path, text + twenty_secrets().replace("TOKEN_", "LATER_"))
    assert message == "$.secrets.PASS_TOKEN.source.argv: expected `array`, got `str`"


def test_config_missing_field_names_secret(tmp_path: Path) -> None:
    message = config_error(tmp_path, twenty_secrets() + '[secrets.NO_ARGV]\nsource = { kind = "command" }\n')
    assert message == "$.secrets.NO_ARGV.source: missing required field 'argv'"


def test_config_unknown_field_suggests_name(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[secrets.A]\nsource = { kind = "static", vaule = "x" }\n')
    assert message == "$.secrets.A.source: unknown field 'vaule' (did you mean 'value'?); valid fields: value"
    message = config_error(tmp_path, "[daemon]\nmax_conections = 3\n")
    assert message.startswith("$.daemon: unknown field 'max_conections' (did you mean 'max_connections'?); valid fields: ")
    assert "max_streams_per_connection" in message


def test_config_unknown_top_level_key(tmp_path: Path) -> None:
    assert config_error(tmp_path, "[secret.A]\nx = 1\n") == "$: unknown field 'secret' (did you mean 'secrets'?); valid fields: daemon, secrets"


def test_config_range_names_setting(tmp_path: Path) -> None:
    assert config_error(tmp_path, "[daemon]\nmax_connections = 0\n") == "$.daemon.max_connections: expected `int` >= 1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A static value where a table, a list or another kind of string is expected.
        (f'[secrets.A]\nsource = "{PASTED}"\n', "$.secrets.A.source: expected `object`, got `str`"),
        (f'[secrets.A]\nsource = {{ kind = "static", value = ["{PASTED}"] }}\n',
         "$.secrets.A.source.value: expected `str`, got `array`"),
        (f'[secrets.A]\nsource = {{ kind = "static", value = "x" }}\nprograms = "{PASTED}"\n',
         "$.secrets.A.programs: expected `array | null`, got `str`"),
        (f'[secrets.A]\nsource = {{ kind = "static", value = "x" }}\ninject = "{PASTED}"\n',
         "$.secrets.A.inject: invalid value (not shown, because it could be a secret value); "
         "expected one of 'referenced', 'always', 'never'"),
        (f'[secrets.A]\nsource = {{ kind = "{PASTED}", value = "x" }}\n',
         f"$.secrets.A.source.kind: unknown source kind (not shown, because it could be a secret value); expected one of {KINDS}"),
        (f'[daemon]\nplaceholder = ["{PASTED}"]\n', "$.daemon.placeholder: expected `str`, got `array`"),
        # Header values, URLs and argv hold credentials; only their place is named.
        (f'[secrets.A]\nsource = {{ kind = "http", url = "http://u:{PASTED}@127.0.0.1/?t={PASTED}", headers = {{ Authorization = ["{PASTED}"] }} }}\n',
         "$.secrets.A.source.headers.Authorization: expected `str`, got `array`"),
        (f'[secrets.A]\nsource = {{ kind = "command", argv = ["curl", "-u", "{PASTED}"], timeout = "{PASTED}" }}\n',
         "$.secrets.A.source.timeout: expected `float`, got `str`"),
    ],
)
def test_config_error_hides_value(tmp_path: Path, text: str, expected: str) -> None:
    message = config_error(tmp_path, text)
    assert PASTED not in message
    assert message == expected


def test_update_params_message_with_type_and_data() -> None:
    params = [None, [{"name": "A", "source": {"kind": "static", "value": "v"}},
                     {"name": "B", "source": {"kind": "statc", "value": PASTED}}]]
    with pytest.raises(msgspec.ValidationError) as error:
        msgspec.convert(params, UpdateParams, strict=False)
    message = safe_validation_message(error.value, root_type=UpdateParams, data=params, strict=False)
    assert message == f"$[1][1].source.kind: unknown source kind 'statc'; expected one of {KINDS}"


def test_update_params_bad_name_shown_only_if_keyword() -> None:
    for name, expected_quote in (("bad-name", "'bad-name'"), (PASTED, "(not shown, because it could be a secret value)")):
        params = [None, [{"name": name, "source": {"kind": "static", "value": "v"}}]]
        with pytest.raises(msgspec.ValidationError) as error:
            msgspec.convert(params, UpdateParams, strict=False)
        message = safe_validation_message(error.value, root_type=UpdateParams, data=params, strict=False)
        assert message == f"$[1][0].name: invalid secret name {expected_quote}; a name must match ^[A-Za-z_][A-Za-z0-9_]*$"


def test_rpc_names_unknown_field(client: Client) -> None:
    with pytest.raises(RemoteError) as error:
        client.call("secrets.update", None, [{"name": "A", "source": {"kind": "static", "value": PASTED}, "extra": 1}])
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert "unknown field 'extra'" in error.value.message
    assert PASTED not in error.value.message


def test_rpc_hides_value_as_field_name(client: Client) -> None:
    with pytest.raises(RemoteError) as error:
        client.call("secrets.update", None, [{"name": "A", "source": {"kind": "static", "value": "v", PASTED: 1}}])
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert "unknown field (not shown, because it could be a secret value)" in error.value.message
    assert PASTED not in error.value.message


def test_plain_msgpack_rpc_names_unknown_field(daemon: Daemon) -> None:
    request = [0, 7, "secrets.update", [None, [{"name": "A", "source": {"kind": "static", "value": PASTED}, "extra": 1}]]]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket_path))
        sock.sendall(msgpack.packb(request))
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            chunk = sock.recv(65536)
            assert chunk, "the daemon closed the connection without a response"
            unpacker.feed(chunk)
            responses = list(unpacker)
            if responses:
                break
    kind, msgid, error, result = responses[0]
    assert (kind, msgid, result) == (1, 7, None)
    assert error[1] == "INVALID_PARAMS (4): invalid params for 'secrets.update': $[1][0]: unknown field 'extra'; valid fields: name, source, description, inject, programs"


def test_reload_error_names_secret(tmp_short: Path) -> None:
    daemon = start_daemon(tmp_short, config='[secrets.GOOD]\nsource = { kind = "env", var = "HOME" }\n')
    try:
        (tmp_short / "config.toml").write_text(
            '[secrets.GOOD]\nsource = { kind = "env", var = "HOME" }\n'
            '[secrets.TYPO]\nsource = { kind = "comand", argv = ["pass", "show", "x"] }\n'
        )
        with daemon.client() as client:
            with pytest.raises(RemoteError) as error:
                client.call("reload")
        assert error.value.code == ErrorCode.CONFIG_INVALID
        assert f"$.secrets.TYPO.source.kind: unknown source kind 'comand'; expected one of {KINDS}" in error.value.message
        assert error.value.message.endswith("; the running config is kept")
    finally:
        assert daemon.stop() == 0
