"""Fixtures for the OpenHands integration: a real daemon, a real conversation, the real terminal tool.

These tests need Python 3.12 or newer with openhands-sdk and openhands-tools
installed (``scripts/openhands-env.sh`` builds that environment); elsewhere
every module here is skipped.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# litellm, imported by openhands.sdk, downloads a model price list at import
# time unless this variable selects its bundled copy, and these tests must stay
# off the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")

from ..conftest import Daemon, start_daemon  # noqa: E402


def restart_daemon(daemon: Daemon) -> str:
    """Stop ``daemon`` and start a new process on the same socket; return the new instance id.

    The ``Daemon`` object then describes the new process, so the fixture's
    teardown stops that one.
    """
    status = daemon.stop()
    assert status == 0, f"secretd exited with {status}"
    fresh = start_daemon(daemon.directory)
    daemon.process = fresh.process
    with fresh.client() as client:
        return client.instance_id


@pytest.fixture(autouse=True, scope="session")
def remove_stale_tmux_sockets() -> Iterator[None]:
    """Remove the tmux sockets that these tests' terminals leave behind.

    openhands-tools 1.58.2 starts a tmux server on a new socket for every
    terminal, and the socket file stays after the server has exited.  Only
    sockets created during the session that no server listens on are removed.
    """
    directory = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
    before = set(directory.glob("openhands-*"))
    yield
    for path in set(directory.glob("openhands-*")) - before:
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(os.fspath(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            probe.close()


@pytest.fixture(autouse=True)
def shell_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give the terminal's interactive bash an empty home and history file of its own.

    Without it every test shell reads the user's ~/.bashrc (which may take
    seconds, or wait on a lock such as pyenv's rehash lock) and appends the
    test commands to the user's ~/.bash_history.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HISTFILE", str(home / ".bash_history"))
    return home


@dataclass
class LookupServer:
    """An HTTP server on 127.0.0.1 that returns ``value`` for every GET and counts the requests."""

    url: str
    value: str = "lookup-value-7f3a9c"
    status: int = 200
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def lookup_server() -> Iterator[LookupServer]:
    state = LookupServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.requests += 1
            state.headers.append(dict(self.headers))
            body = state.value.encode()
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/secret"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def registry(daemon: Daemon) -> Iterator[Any]:
    """A ``SecretdSecretRegistry`` on its own scope of the test daemon."""
    from secretd.client.openhands import SecretdSecretRegistry

    connected = SecretdSecretRegistry.connect(daemon.socket_path, label="test")
    yield connected
    connected.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def conversation(daemon: Daemon, workspace: Path) -> Iterator[Any]:
    """A real ``LocalConversation`` whose registry is the daemon-backed one; no LLM is ever called."""
    from openhands.sdk import LLM, Agent, Conversation, Tool
    from pydantic import SecretStr

    from secretd.client.openhands import SECRETD_TERMINAL_TOOL, use_secretd

    llm = LLM(model="openai/unused-model", api_key=SecretStr("unused"), usage_id="test")
    agent = Agent(llm=llm, tools=[Tool(name=SECRETD_TERMINAL_TOOL)])
    local = Conversation(agent=agent, workspace=str(workspace), visualizer=None)
    registry = use_secretd(local, socket_path=daemon.socket_path)
    yield local
    registry.close()
    local.close()


@dataclass
class Terminal:
    """The terminal tool of a conversation, called as the agent calls it."""

    tool: Any
    conversation: Any

    def run(self, command: str, **kwargs: Any) -> Any:
        """Run ``command`` through the tool: executor, then the SDK's model-wide masking."""
        from openhands.tools.terminal import TerminalAction

        return self.tool(TerminalAction(command=command, **kwargs), self.conversation)

    @property
    def executor(self) -> Any:
        return self.tool.executor


def make_terminal(conversation: Any, executor: Any = None) -> Terminal:
    """Build ``SecretdTerminalTool`` for ``conversation``, around ``executor`` when one is given."""
    from secretd.client.openhands import SecretdTerminalTool

    (tool,) = SecretdTerminalTool.create(conversation.state, executor=executor)
    return Terminal(tool, conversation)


@pytest.fixture
def terminal(conversation: Any) -> Iterator[Terminal]:
    """``SecretdTerminalTool`` as the agent builds it (tmux pane pool) on the daemon-backed conversation."""
    built = make_terminal(conversation)
    yield built
    built.executor.close()


@pytest.fixture
def terminal_factory(conversation: Any, workspace: Path) -> Iterator[Callable[..., Terminal]]:
    """Build terminals around a given executor class and parameters; each is closed after the test."""
    from secretd.client.openhands import SecretdTerminalExecutor

    built: list[Terminal] = []

    def build(executor_class: Any = SecretdTerminalExecutor, **params: Any) -> Terminal:
        terminal = make_terminal(conversation, executor_class(working_dir=str(workspace), **params))
        built.append(terminal)
        return terminal

    yield build
    for terminal in built:
        terminal.executor.close()
