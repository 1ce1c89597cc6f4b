"""The wheel: namespaced import names, nothing top-level, compiled masker modules, and a client that loads no daemon code."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

# The masker's modules that hatch_build.py compiles with mypyc.
COMPILED_MODULES = ("boundaries", "database", "escapes", "finder", "matcher", "patterns", "periodic", "prefixes",
                    "runs", "stream", "variants")

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
    # The masker's C module, compiled by hatch_build.py, and not its source.
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert sorted(name for name in names if name.startswith("secretd/daemon/masking/_scan")) == [
        f"secretd/daemon/masking/_scan{suffix}", "secretd/daemon/masking/_scan.pyi"
    ]
    # Its Python modules compiled with mypyc into a directory of their own, with their sources beside.
    compiled = f"secretd/daemon/masking/_compiled/{suffix.removeprefix('.').removesuffix('.so')}/"
    assert sorted(name.removeprefix(compiled) for name in names if name.startswith(compiled)) == sorted(
        [*(f"{module}{suffix}" for module in COMPILED_MODULES), f"_native__mypyc{suffix}", "sources.json"]
    )
    assert [name for name in names if name.endswith(suffix) and not name.startswith(compiled)] == [
        f"secretd/daemon/masking/_scan{suffix}"
    ]
    for module in COMPILED_MODULES:
        assert f"secretd/daemon/masking/{module}.py" in names
    assert "-none-any" not in wheel.name


def test_wheel_without_a_compiler_is_pure_python(tmp_path: Path) -> None:
    env = {**os.environ, "SECRETD_NO_EXTENSION": "1"}
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=300, env=env)
    (built,) = tmp_path.glob("secretd-*.whl")
    assert built.name.endswith("-py3-none-any.whl")
    assert not [name for name in zipfile.ZipFile(built).namelist() if name.endswith((".so", ".json"))]


def test_wheel_without_mypyc_has_only_the_c_module(tmp_path: Path) -> None:
    env = {**os.environ, "SECRETD_NO_MYPYC": "1"}
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=300, env=env)
    (built,) = tmp_path.glob("secretd-*.whl")
    names = zipfile.ZipFile(built).namelist()
    assert [name for name in names if name.endswith((".so", ".json")) or "_compiled" in name] == [
        f"secretd/daemon/masking/_scan{sysconfig.get_config_var('EXT_SUFFIX')}"
    ]


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
        "from secretd.daemon.masking import COMPILED, Masker, MaskStream, escapes\n"
        "assert escapes.ACCELERATED and COMPILED\n"
        "masker = Masker.build(['Zq81-secret-value'])\n"
        "stream = MaskStream()\n"
        "out = stream.feed(masker, b'a \\x1b[1mZq81-sec') + stream.feed(masker, b'ret-value\\x1b[0m b')\n"
        "assert out + stream.flush(masker) == b'a \\x1b[1m<secret-hidden>\\x1b[0m b', out\n"
        "print('ok')\n"
    )
    result = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
    for script in ("secretd", "secretctl"):
        help_run = subprocess.run([env_dir / "bin" / script, "--help"], capture_output=True, text=True, timeout=60)
        assert help_run.returncode == 0
        assert f"usage: {script}" in help_run.stdout
    # A source that changed after the build is imported instead of the compiled modules, with a warning.
    (source,) = env_dir.glob("lib/python*/site-packages/secretd/daemon/masking/finder.py")
    source.write_text(source.read_text() + "\n# edited\n")
    edited = subprocess.run([python, "-c", "import secretd.daemon.masking as m; print(m.COMPILED)"],
                            capture_output=True, text=True, timeout=60)
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.strip() == "False"
    assert "do not match finder.py, so the masker runs from its sources" in edited.stderr
