"""msgpack-rpc clients this project did not write call the daemon without our framing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from secretd.client import Client, SecretSpec, StaticSource

from .conftest import Daemon

VALUE = "Zq81-neovim-test-value-Xy77"


@pytest.fixture
def with_secret(client: Client) -> Client:
    client.update_secrets(None, [SecretSpec(name="API_KEY", source=StaticSource(value=VALUE))])
    return client


def test_neovim_rpcrequest_masks(daemon: Daemon, with_secret: Client, tmp_short: Path) -> None:
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("Neovim is not installed (Debian package neovim; .ci/run installs it)")
    out = tmp_short / "result.json"
    subprocess.run(
        [
            nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
            "-c", f"let ch = sockconnect('pipe', '{daemon.socket_path}', {{'rpc': v:true}})",
            "-c", f"let r = rpcrequest(ch, 'mask', v:null, 'token {VALUE} end')",
            "-c", f"let s = rpcrequest(ch, 'status')",
            "-c", f"call writefile([json_encode([r, s.socket])], '{out}')",
            "-c", "qa!",
        ],
        check=True, timeout=60, capture_output=True,
    )
    masked, socket_path = json.loads(out.read_text())
    assert masked == "token <secret-hidden> end"
    assert socket_path == str(daemon.socket_path)


def test_neovim_sees_error_for_unknown_method(daemon: Daemon, tmp_short: Path) -> None:
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("Neovim is not installed (Debian package neovim; .ci/run installs it)")
    out = tmp_short / "error.txt"
    subprocess.run(
        [
            nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
            "-c", f"let g:ch = sockconnect('pipe', '{daemon.socket_path}', {{'rpc': v:true}})",
            "-c", "lua local ok, err = pcall(vim.fn.rpcrequest, vim.g.ch, 'no.such'); "
                  f"vim.fn.writefile({{tostring(ok), tostring(err)}}, '{out}')",
            "-c", "qa!",
        ],
        check=True, timeout=60, capture_output=True,
    )
    ok, error = out.read_text().splitlines()
    assert ok == "false"
    assert "METHOD_NOT_FOUND (3): unknown method 'no.such'" in error


def test_pynvim_session_masks_bytes(daemon: Daemon, with_secret: Client) -> None:
    from pynvim.msgpack_rpc import socket_session

    session = socket_session(str(daemon.socket_path))
    try:
        masked = session.request("mask", None, f"a {VALUE} b".encode())
        assert masked == b"a <secret-hidden> b"
        stream = session.request("stream.open", None)
        first = session.request("stream.feed", stream, VALUE[:9].encode())
        rest = session.request("stream.feed", stream, VALUE[9:].encode() + b"!")
        tail = session.request("stream.close", stream)
        assert first + rest + tail == b"<secret-hidden>!"
    finally:
        session.close()
