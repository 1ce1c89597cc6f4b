"""`make demo` plays a session and shows masked output with no value in it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_demo_masks_every_form() -> None:
    result = subprocess.run([sys.executable, str(REPO / "examples" / "demo.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "the API token is <secret-hidden>" in out
    assert "API_TOKEN=<secret-hidden>" in out
    assert "GITHUB_TOKEN=<secret-hidden>" in out
    assert "https://x-access-token:<secret-hidden>@github.com/acme/app.git (fetch)" in out
    assert "<secret-hidden> <- split across two writes" in out
    assert "demo: no secret value appeared" in out
