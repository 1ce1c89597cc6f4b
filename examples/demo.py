"""Play an agent session against a temporary secretd and show the masked output.

Starts a daemon on a socket in a fresh temporary directory, registers a static
secret and one whose value comes from a small script, runs real bash commands
that print them in several ways, and prints what an LLM would see.  Exits
non-zero if any value shows up in what it prints.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from secretd.client import CommandSource, Conversation, SecretSpec


def start_daemon(directory: Path) -> tuple[subprocess.Popen[bytes], Path]:
    socket_path = directory / "secretd.sock"
    log = open(directory / "secretd.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "secretd.daemon", "--socket", str(socket_path), "--log-format", "json"],
        stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(socket_path))
            return process, socket_path
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"demo: secretd did not start; see {directory / 'secretd.log'}")


def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="secretd-demo-", dir="/tmp"))
    process, socket_path = start_daemon(directory)
    api_token = "sk-demo-" + secrets.token_hex(12)
    script_token = "ghp_" + secrets.token_urlsafe(24)
    script = directory / "print-token.sh"
    script.write_text(f"#!/bin/sh\necho {script_token}\n")
    script.chmod(0o700)
    printed: list[str] = []

    def say(text: str) -> None:
        printed.append(text)
        print(text, flush=True)

    try:
        conversation = Conversation(socket_path=socket_path, label="demo")
        conversation.update({"API_TOKEN": api_token}, descriptions={"API_TOKEN": "a static token"})
        conversation.update({"GITHUB_TOKEN": SecretSpec(
            name="GITHUB_TOKEN", description="printed by a script",
            source=CommandSource(argv=[str(script)]),
        )})
        say(f"daemon on {socket_path}")
        say("secrets: API_TOKEN (a static value), GITHUB_TOKEN (printed by a script the daemon runs)\n")
        commands = [
            'echo "the API token is $API_TOKEN"',
            "env | grep _TOKEN | sort  # $API_TOKEN $GITHUB_TOKEN",
            'git init -q repo && git -C repo remote add origin '
            '"https://x-access-token:$GITHUB_TOKEN@github.com/acme/app.git" && git -C repo remote -v',
            'printf "%s" "${API_TOKEN:0:10}"; sleep 0.5; printf "%s <- split across two writes\\n" "${API_TOKEN:10}"',
            'echo "$GITHUB_TOKEN" | base64  # the base64 form is masked too',
        ]
        for command in commands:
            say(f"$ {command}")
            result = conversation.run(command, cwd=directory, timeout=30)
            for line in result.output.splitlines():
                say(f"  {line}")
            say(f"  [exit {result.exit_code}; injected: {', '.join(result.injected) or 'none'}]\n")
        conversation.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        log_text = (directory / "secretd.log").read_text()
        shutil.rmtree(directory, ignore_errors=True)
    shown = "\n".join(printed)
    leaked = [name for name, value in (("API_TOKEN", api_token), ("GITHUB_TOKEN", script_token))
              if value in shown or value in log_text]
    if leaked:
        print(f"demo: FAILED, value of {', '.join(leaked)} appeared in the output or the daemon log", file=sys.stderr)
        return 1
    print("demo: no secret value appeared in the output above or in the daemon's log")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    sys.exit(main())
