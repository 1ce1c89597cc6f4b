"""msgpack-rpc clients this project did not write call the daemon without our framing."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
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
    # pynvim leaves its event loop's transport for the garbage collector, so it
    # runs in a child process where that warning cannot fail this suite.
    script = (
        "import sys\n"
        "from pynvim.msgpack_rpc import socket_session\n"
        "session = socket_session(sys.argv[1])\n"
        "value = sys.argv[2].encode()\n"
        "masked = session.request('mask', None, b'a ' + value + b' b')\n"
        "stream = session.request('stream.open', None)\n"
        "parts = [session.request('stream.feed', stream, value[:9]),\n"
        "         session.request('stream.feed', stream, value[9:] + b'!'),\n"
        "         session.request('stream.close', stream)]\n"
        "try:\n"
        "    session.request('no.such')\n"
        "except Exception as exc:\n"
        "    error = str(exc)\n"
        "print(repr((masked, b''.join(parts), error)))\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script, str(daemon.socket_path), VALUE],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    masked, streamed, error = ast.literal_eval(result.stdout.strip())
    assert masked == b"a <secret-hidden> b"
    assert streamed == b"<secret-hidden>!"
    assert "METHOD_NOT_FOUND (3)" in error
