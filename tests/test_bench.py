"""The benchmark's smoke run: every row present, and no contender leaves a value in its output.

`bench/run.py` needs openhands-sdk, which needs Python 3.12, so the test runs
it in `.venv312` (built by `scripts/openhands-env.sh`) and is skipped where
that environment is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from bench.contenders import PIPELINE_DEPTH

from .conftest import REPO

pytestmark = pytest.mark.slow

VENV_PYTHON = REPO / ".venv312" / "bin" / "python"

CEILINGS = ("echo_oneshot", "echo_stream", "echo_plain_oneshot", "echo_plain_stream", "secretd_empty_oneshot",
            "secretd_empty_stream", "secretd_empty_pipelined")
CONTENDERS = ("secretd_oneshot", "secretd_stream", "secretd_pipelined", "masker_oneshot", "masker_stream",
              "sdk_oneshot", "sdk_stream")
TARGETS = (
    "secretd one-shot vs SDK mask_secrets_in_output",
    "secretd stream vs SDK stream masker, 8 KiB chunks",
    "secretd one-shot vs raw socket echo",
    "secretd stream vs raw socket echo, 8 KiB frames",
    f"secretd stream, {PIPELINE_DEPTH} in flight, vs SDK stream masker, 8 KiB chunks",
    f"secretd stream, {PIPELINE_DEPTH} in flight, vs raw socket echo, 8 KiB frames",
)

# litellm, imported by openhands.sdk, downloads a price list at import unless this selects its bundled copy.
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENHANDS_SUPPRESS_BANNER": "1"}


def _skip_reason() -> str | None:
    if not VENV_PYTHON.exists():
        return f"{VENV_PYTHON} is missing; create it with scripts/openhands-env.sh"
    probe = subprocess.run(
        [VENV_PYTHON, "-c", "import openhands.sdk.conversation.secret_registry, secretd.daemon.masking"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **OFFLINE_ENV},
    )
    if probe.returncode != 0:
        return (f"openhands-sdk or secretd does not import in .venv312 (rerun scripts/openhands-env.sh): "
                f"{probe.stderr.strip()[-300:]}")
    return None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    json_path = tmp_path_factory.mktemp("bench") / "result.json"
    completed = subprocess.run(
        [VENV_PYTHON, "bench/run.py", "--quick", "--json", str(json_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **OFFLINE_ENV},
    )
    assert completed.returncode == 0, f"bench/run.py --quick failed:\n{completed.stderr[-4000:]}"
    return completed.stdout, json.loads(json_path.read_text())


def _table_rows(markdown: str, heading: str) -> list[list[str]]:
    """Return the cells of each body row of the table under `heading`."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("### "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # the first row contains the column headings


def test_bench_measures_every_contender(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    settings = result["settings"]
    measured = {(item["contender"], item["size_bytes"], item["secrets"]) for item in result["results"]}
    for size in settings["sizes_bytes"]:
        for ceiling in CEILINGS:
            assert (ceiling, size, None) in measured
        for count in settings["counts"]:
            for contender in CONTENDERS:
                assert (contender, size, count) in measured
    for item in result["results"]:
        assert item["mib_per_s"] > 0
        assert 0 < item["measured_bytes"] <= item["input_bytes"]


def test_bench_prints_every_row(quick_run: tuple[str, dict[str, Any]]) -> None:
    markdown, result = quick_run
    settings = result["settings"]
    cells = len(settings["sizes_bytes"]) * len(settings["counts"])

    throughput = _table_rows(markdown, "### Throughput (MiB/s)")
    assert len(throughput) == cells
    for row in throughput:
        assert len(row) == 2 + len(CONTENDERS)
        assert "–" not in row

    ceilings = _table_rows(markdown, "### Transport ceilings (MiB/s)")
    assert len(ceilings) == len(settings["sizes_bytes"])
    for row in ceilings:
        assert "–" not in row
    assert len(_table_rows(markdown, "### Masker without escape sequences (MiB/s)")) == cells
    assert len(_table_rows(markdown, "### Setup per secret count (seconds)")) == len(settings["counts"])
    assert len(_table_rows(markdown, "### Checks on the masked outputs")) == cells
    rebuild_heading = f"### Rebuild at {settings['rebuild_count']:,} secrets".replace(",", " ")
    assert len(_table_rows(markdown, rebuild_heading)) == 9


def test_bench_evaluates_every_target(quick_run: tuple[str, dict[str, Any]]) -> None:
    markdown, result = quick_run
    names = {item["target"] for item in result["targets"]}
    for name in TARGETS:
        assert name in names
    target_rows = _table_rows(markdown, "### Targets")
    assert len(target_rows) == len(result["targets"])
    for row in target_rows:
        assert row[-1] in ("PASS", "MISS")


def test_bench_outputs_contain_no_value(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    for check in result["checks"]:
        where = f"{check['size_bytes']} bytes, {check['secrets']} secrets"
        assert check["secretd_values_left"] == 0, where
        assert check["secretd_values_visible"] == 0, where
        assert check["sdk_values_left"] == 0, where


def test_bench_secretd_masks_encoded_forms(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    for check in result["checks"]:
        where = f"{check['size_bytes']} bytes, {check['secrets']} secrets"
        assert check["forms_embedded"] > 0, where
        assert check["secretd_forms_left"] == 0, where
        # The SDK replaces exact values only, so every encoded or split form it saw stays.
        assert check["sdk_forms_left"] == check["forms_in_sdk_input"], where


def test_bench_stream_matches_oneshot(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, result = quick_run
    for check in result["checks"]:
        where = f"{check['size_bytes']} bytes, {check['secrets']} secrets"
        assert check["secretd_stream_equals_oneshot"], where
        assert check["masker_equals_daemon"], where
