"""Drive a real OpenHands conversation's terminal tool with secrets held by secretd.

No language model is called: the script builds the conversation's terminal
tool and calls it as the agent would, then prints each observation exactly
as the model would receive it.

    .venv/bin/secretd &             # after `make run` once; or: systemctl --user start secretd.socket
    .venv312/bin/python examples/openhands_terminal.py [--socket PATH]

It takes the token from $GITHUB_TOKEN when set, else makes one up.  Needs
Python 3.12 with openhands-sdk and openhands-tools, which
``scripts/openhands-env.sh`` installs into ``.venv312``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile

# litellm, which openhands.sdk imports, otherwise downloads a price list at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")

from openhands.sdk import LLM, Agent, Conversation, Tool  # noqa: E402
from openhands.sdk.secret import SecretSource  # noqa: E402
from openhands.tools.terminal import TerminalAction  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from secretd.client.openhands import SECRETD_TERMINAL_TOOL, SecretdTerminalTool, use_secretd  # noqa: E402

#: The commands the "agent" runs.  The model receives none of the values they print.
COMMANDS = [
    "git remote -v",
    'printf "%s" "$GITHUB_TOKEN" | wc -c',
    'printf "%s" "$GITHUB_TOKEN" | base64',
    'echo "deploy key: $DEPLOY_KEY"',
]


class DeployKey(SecretSource):
    """A user-defined source: secretd calls it back in this process when a command needs it."""

    def get_value(self) -> str:
        return "deploy-" + secrets.token_hex(12)


def main(argv: list[str] | None = None) -> int:
    """Run the commands and print what the model would see; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="secretd's socket (default: $SECRETD_SOCKET or the user's runtime dir)")
    args = parser.parse_args(argv)
    token = os.environ.get("GITHUB_TOKEN") or "ghp_" + secrets.token_hex(18)

    with tempfile.TemporaryDirectory(prefix="openhands-example-") as workspace:
        # A checkout whose remote URL carries the token, as `git clone https://TOKEN@…` leaves it.
        subprocess.run(["git", "init", "-q", workspace], check=True)
        remote = f"https://{token}@github.com/example/repo.git"
        subprocess.run(["git", "-C", workspace, "remote", "add", "origin", remote], check=True)

        llm = LLM(model="openai/unused", api_key=SecretStr("unused"), usage_id="example")
        agent = Agent(llm=llm, tools=[Tool(name=SECRETD_TERMINAL_TOOL)])
        conversation = Conversation(agent=agent, workspace=workspace, visualizer=None)
        registry = use_secretd(conversation, socket_path=args.socket)
        conversation.update_secrets({"GITHUB_TOKEN": token, "DEPLOY_KEY": DeployKey()})

        (terminal,) = SecretdTerminalTool.create(conversation.state)
        try:
            for command in COMMANDS:
                observation = terminal(TerminalAction(command=command), conversation)
                print(f"$ {command}")
                print(observation.text.rstrip())
                print()
        finally:
            terminal.executor.close()
            registry.close()
            conversation.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
