"""The real OpenHands terminal tool on a conversation whose registry is secretd."""

from __future__ import annotations

import hashlib
import re
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openhands.tools.terminal", reason="needs openhands-tools (Python 3.12+): run make test-openhands")

from openhands.sdk.secret import LookupSecret  # noqa: E402
from openhands.tools.terminal import TerminalAction  # noqa: E402
from openhands.tools.terminal.impl import TerminalExecutor  # noqa: E402
from openhands.tools.terminal.terminal.tmux_terminal import TmuxTerminal  # noqa: E402

from secretd.client.openhands import SecretdTerminalExecutor  # noqa: E402

from ..conftest import Daemon  # noqa: E402
from .conftest import LookupServer, Terminal, restart_daemon  # noqa: E402
from .test_registry import DynamicSecret, RotatingSecret  # noqa: E402

pytestmark = pytest.mark.openhands

HIDDEN = "<secret-hidden>"
TOKEN = "ghp_terminalToken0123456789abcd"
API_KEY = "sk-terminal-api-key-0987654321"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def raw(terminal: Terminal, command: str) -> str:
    """Run ``command`` through the executor without a conversation: no secrets, no masking."""
    return terminal.executor(TerminalAction(command=command), None).text


def scrollback(terminal: Terminal) -> str:
    """Everything in the tmux history of every pane of a pooled executor."""
    pool = terminal.executor._pool
    return "\n".join(
        "\n".join(pane.pane.cmd("capture-pane", "-p", "-J", "-S", "-").stdout) for pane in pool._all_panes
    )


@pytest.fixture
def keep_scrollback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop the terminal clearing tmux's history after each command, so a test can read all of it."""
    monkeypatch.setattr(TmuxTerminal, "clear_screen", lambda self: None)


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    return tmp_path / "bash_history"


def test_referenced_secret_reaches_command(conversation: Any, terminal: Terminal) -> None:
    conversation.update_secrets({"API_KEY": API_KEY})

    observation = terminal.run('printf %s "$API_KEY" | sha256sum')

    assert sha256(API_KEY) in observation.text
    assert observation.exit_code == 0


def test_printed_secrets_masked(conversation: Any, terminal: Terminal) -> None:
    conversation.update_secrets({"SECRET_TOKEN": TOKEN, "API_KEY": API_KEY})

    both = terminal.run('echo "token=$SECRET_TOKEN key=$API_KEY"')
    one = terminal.run("echo $API_KEY")

    assert f"token={HIDDEN} key={HIDDEN}" in both.text
    assert TOKEN not in both.text
    assert API_KEY not in both.text
    assert HIDDEN in one.text
    assert API_KEY not in one.text


def test_unreferenced_secret_not_exported(conversation: Any, terminal: Terminal) -> None:
    conversation.update_secrets({"GITHUB_TOKEN": TOKEN, "TOKEN": API_KEY})

    # T.KEN matches the variable name without naming the secret TOKEN.
    observation = terminal.run(': "$GITHUB_TOKEN"; echo "names=$(printenv | cut -d= -f1 | grep -c -x -e T.KEN)"')

    assert "names=0" in observation.text


def test_git_remote_token_masked(conversation: Any, terminal: Terminal, workspace: Path) -> None:
    conversation.update_secrets({"GITHUB_TOKEN": TOKEN})
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    subprocess.run(
        ["git", "-C", str(workspace), "remote", "add", "origin", f"https://{TOKEN}@github.com/repo/test.git"],
        check=True,
    )

    observation = terminal.run("git remote -v")

    # tmux renders the tab after "origin" as spaces.
    assert re.search(rf"origin\s+https://{HIDDEN}@github.com/repo/test.git \(fetch\)", observation.text)
    assert TOKEN not in observation.text


def test_lookup_source_resolved_by_daemon(conversation: Any, terminal: Terminal, lookup_server: LookupServer) -> None:
    conversation.update_secrets({"LOOKED_UP": LookupSecret(url=lookup_server.url)})

    hashed = terminal.run('printf %s "$LOOKED_UP" | sha256sum')
    printed = terminal.run('echo "$LOOKED_UP"')

    assert sha256(lookup_server.value) in hashed.text
    assert HIDDEN in printed.text
    assert lookup_server.value not in printed.text
    assert lookup_server.requests == 1


def test_client_held_source_called_back(conversation: Any, terminal: Terminal) -> None:
    conversation.update_secrets({"DYNAMIC_TOKEN": DynamicSecret()})

    observation = terminal.run('printf %s "$DYNAMIC_TOKEN" | sha256sum; echo "$DYNAMIC_TOKEN"')

    assert sha256("dynamic-token-456") in observation.text
    assert "dynamic-token-456" not in observation.text


def test_rotating_source_masked_after_failure(conversation: Any, terminal: Terminal) -> None:
    rotating = RotatingSecret()
    conversation.update_secrets({"ROTATING": rotating})

    first = terminal.run("echo $ROTATING")
    second = terminal.run("echo $ROTATING")
    rotating._failing = True
    third = terminal.run("echo $ROTATING")

    for observation in (first, second, third):
        assert HIDDEN in observation.text
        assert "rotating-value-" not in observation.text


def test_no_value_in_history_or_scrollback(
    conversation: Any, terminal_factory: Callable[..., Terminal], keep_scrollback: None, history_file: Path
) -> None:
    conversation.update_secrets({"API_KEY": API_KEY})
    terminal = terminal_factory(max_panes=1, env={"HISTFILE": str(history_file)})

    used = terminal.run('test "$(printf %s "$API_KEY" | sha256sum | cut -c1-64)" = ' + sha256(API_KEY) + " && echo match")
    history = raw(terminal, "history")
    raw(terminal, "history -a")  # what bash writes to $HISTFILE when it exits
    screen = scrollback(terminal)

    assert "match" in used.text
    assert API_KEY not in history
    assert "export API_KEY" not in history
    assert API_KEY not in screen
    assert API_KEY not in history_file.read_text()


def test_sdk_executor_leaves_value_in_history(
    conversation: Any, terminal_factory: Callable[..., Terminal], keep_scrollback: None, history_file: Path
) -> None:
    """The check above can fail: the SDK's own executor types the value into the shell."""
    conversation.update_secrets({"API_KEY": API_KEY})
    terminal = terminal_factory(TerminalExecutor, max_panes=1, env={"HISTFILE": str(history_file)})

    terminal.run('test -n "$API_KEY" && echo set')
    history = raw(terminal, "history")
    raw(terminal, "history -a")
    screen = scrollback(terminal)

    assert API_KEY in history
    assert API_KEY in screen
    assert API_KEY in history_file.read_text()


def test_xtrace_prints_no_value(
    conversation: Any, terminal_factory: Callable[..., Terminal], keep_scrollback: None
) -> None:
    conversation.update_secrets({"API_KEY": API_KEY})
    terminal = terminal_factory(max_panes=1)

    raw(terminal, "set -xv")
    # xtrace shows the expanded words of the shell's own commands, so the value
    # is used in a child bash, which does not inherit xtrace.
    observation = terminal.run("bash -c 'printf %s \"$API_KEY\" | wc -c'")
    flags = raw(terminal, "echo flags=$-")

    assert str(len(API_KEY)) in observation.text
    assert API_KEY not in scrollback(terminal)
    assert "x" in flags.split("flags=")[-1].split()[0]


def run_until_output(terminal: Terminal, command: str, expected: str, attempts: int = 3) -> list[str]:
    """Run ``command`` until its output contains ``expected``; return every output seen.

    NOTE: the subprocess backend of openhands-tools 1.58.2 now and then
    returns a command's output as bare bracketed-paste escapes.  The SDK's
    own executor loses output the same way, so a lost output is retried.
    """
    outputs: list[str] = []
    for _ in range(attempts):
        outputs.append(terminal.run(command).text)
        if expected in outputs[-1]:
            break
    return outputs


def test_subprocess_terminal(conversation: Any, terminal_factory: Callable[..., Terminal]) -> None:
    conversation.update_secrets({"API_KEY": API_KEY})
    terminal = terminal_factory(terminal_type="subprocess")

    hashed = run_until_output(terminal, 'printf %s "$API_KEY" | sha256sum', sha256(API_KEY))
    printed = run_until_output(terminal, "echo $API_KEY", HIDDEN)
    history = raw(terminal, "history")

    assert sha256(API_KEY) in hashed[-1]
    assert HIDDEN in printed[-1]
    for output in hashed + printed:
        assert API_KEY not in output
    assert API_KEY not in history


def test_daemon_restart_mid_conversation(conversation: Any, terminal: Terminal, daemon: Daemon) -> None:
    conversation.update_secrets({"API_KEY": API_KEY, "DYNAMIC_TOKEN": DynamicSecret()})
    assert sha256(API_KEY) in terminal.run('printf %s "$API_KEY" | sha256sum').text

    restart_daemon(daemon)
    hashed = terminal.run('printf %s "$DYNAMIC_TOKEN$API_KEY" | sha256sum')
    printed = terminal.run('echo "$API_KEY $DYNAMIC_TOKEN"')

    assert sha256("dynamic-token-456" + API_KEY) in hashed.text
    assert f"{HIDDEN} {HIDDEN}" in printed.text


def test_output_withheld_while_daemon_down(conversation: Any, terminal: Terminal, daemon: Daemon) -> None:
    conversation.update_secrets({"API_KEY": API_KEY})
    terminal.run("echo $API_KEY")
    daemon.stop()

    observation = terminal.run('echo "still here: $API_KEY"')

    assert API_KEY not in observation.text
    assert "[secretd: output withheld" in observation.text


def test_agent_spec_builds_secretd_terminal(conversation: Any) -> None:
    # The agent builds its tools on the first send_message() or run(); this
    # starts that step without a model call.
    conversation._ensure_agent_ready()
    tool = conversation.agent.tools_map["terminal"]
    conversation.update_secrets({"API_KEY": API_KEY})

    observation = tool(TerminalAction(command="echo $API_KEY"), conversation)

    assert isinstance(tool.executor, SecretdTerminalExecutor)
    assert HIDDEN in observation.text
    assert API_KEY not in observation.text


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The record's attributes too: libtmux puts commands and pane contents in ``extra`` fields.
        self.lines.append(f"{self.format(record)} {vars(record)!r}")


@pytest.fixture
def all_logs() -> Iterator[_Records]:
    handler = _Records()
    loggers = [logging.getLogger(name) for name in ("", "openhands", "libtmux", "secretd")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_logs_hold_no_value(conversation: Any, terminal: Terminal, daemon: Daemon, all_logs: _Records) -> None:
    conversation.update_secrets({"API_KEY": API_KEY, "DYNAMIC_TOKEN": DynamicSecret()})

    terminal.run('echo "$API_KEY $DYNAMIC_TOKEN"')
    terminal.run('printf %s "$API_KEY" | sha256sum')

    logged = "\n".join(all_logs.lines)
    assert "Sending command" in logged
    for value in (API_KEY, "dynamic-token-456"):
        assert value not in logged
        assert value not in daemon.log_text()
