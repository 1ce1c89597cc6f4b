"""examples/openhands_terminal.py runs against a real daemon and prints no value."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openhands.sdk", reason="needs openhands-sdk (Python 3.12+): run make test-openhands")

from ..conftest import Daemon  # noqa: E402

pytestmark = pytest.mark.openhands

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openhands_terminal.py"
TOKEN = "ghp_exampleToken00112233445566778899"


def test_example_masks_every_value(daemon: Daemon) -> None:
    env = {**os.environ, "GITHUB_TOKEN": TOKEN, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--socket", str(daemon.socket_path)],
        capture_output=True, text=True, env=env, timeout=180,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"origin\s+https://<secret-hidden>@github.com/example/repo.git \(fetch\)", result.stdout)
    assert "base64\n<secret-hidden>" in result.stdout
    assert "deploy key: <secret-hidden>" in result.stdout
    assert f"{len(TOKEN)}" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    assert base64.b64encode(TOKEN.encode()).decode()[:40] not in result.stdout
    assert "deploy-" not in result.stdout + result.stderr
