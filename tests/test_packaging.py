"""The wheel: namespaced import names, nothing top-level, and a client that loads no daemon code."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("secretd-*.whl")
    return built


def test_wheel_has_only_the_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"secretd", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for package in ("protocol", "daemon", "client"):
        assert f"secretd/{package}/__init__.py" in names
        assert f"secretd/{package}/py.typed" in names
    assert "secretd/__init__.py" not in names  # a PEP 420 namespace


def test_wheel_installs_and_imports(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600,
                   capture_output=True)
    check = (
        "import sys\n"
        "import secretd.client\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('structlog', 'hyperscan', 'msgpack', 'httpx', 'tree_sitter') or m.startswith('secretd.daemon'))\n"
        "assert not loaded, loaded\n"
        "import secretd.protocol, secretd.daemon, secretd.daemon.server\n"
        "print('ok')\n"
    )
    result = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
    for script in ("secretd", "secretctl"):
        help_run = subprocess.run([env_dir / "bin" / script, "--help"], capture_output=True, text=True, timeout=60)
        assert help_run.returncode == 0
        assert f"usage: {script}" in help_run.stdout
