"""Compile the masker's C module (`secretd.daemon.masking._scan`) while hatchling builds a wheel.

The module is one C file with no dependencies, compiled with the compiler
and flags Python was built with (`sysconfig`). A wheel that contains it is
tagged for this interpreter and platform. An editable install compiles it
next to its source instead, where the source tree is imported from.

Without a C compiler, or with SECRETD_NO_EXTENSION=1, the build goes on
without the module, the wheel stays pure Python, and the masker builds its
escape-sequence view and finds wrapped base64 lines with regular
expressions instead. On the benchmark input the view alone is then about
25 times slower (7.4 ms against 0.3 ms per MiB, on a 2-core AMD EPYC).

The masker's Python modules are also compiled, with mypyc, into C
extension modules. Their bookkeeping per chunk of a stream then runs 1.7
times faster (69 against 40 µs per 8 KiB chunk at 1 000 secrets). mypyc
is part of mypy, a build requirement. The compiled modules go into
`secretd/daemon/masking/_compiled/<tag>/` with the SHA-256 digest of each
source they were built from (`sources.json`). The package imports them in
place of its sources only when those digests still match (see its
`__init__.py`), so an edited source or a checkout of another commit is
never shadowed by compiled code. When mypyc is missing or fails, or with
SECRETD_NO_MYPYC=1 or SECRETD_NO_EXTENSION=1, the modules stay plain
Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_PACKAGE = "secretd/daemon/masking"
_SOURCE = Path("daemon") / _PACKAGE / "_scan.c"
# The masker's modules that mypyc compiles: all but the package's __init__.py and
# policy.py, whose checks of a caller's types must raise its own messages.
_COMPILED = (
    "boundaries", "database", "escapes", "finder", "matcher", "patterns", "periodic", "prefixes", "runs",
    "stream", "variants",
)
# The shared library that contains the compiled code of all of them.
_GROUP = "secretd.daemon.masking._native"


class EscapesBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        no_extension = os.environ.get("SECRETD_NO_EXTENSION") == "1"
        no_mypyc = no_extension or os.environ.get("SECRETD_NO_MYPYC") == "1"
        root = Path(self.root)
        source = root / _SOURCE
        name = "_scan" + sysconfig.get_config_var("EXT_SUFFIX")
        if version == "editable":
            if not no_extension:
                _compile(source, source.with_name(name))
            compiled = source.parent / "_compiled" / _tag()
            if no_mypyc:
                shutil.rmtree(compiled, ignore_errors=True)
            else:
                _compile_modules(root, compiled)
            return
        if no_extension:
            return
        self._build_directory = tempfile.TemporaryDirectory(prefix="secretd-build-")
        directory = Path(self._build_directory.name)
        if _compile(source, directory / name):
            build_data["force_include"][str(directory / name)] = f"{_PACKAGE}/{name}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
        if not no_mypyc:
            for path in _compile_modules(root, directory / "mypyc"):
                build_data["force_include"][str(path)] = f"{_PACKAGE}/_compiled/{_tag()}/{path.name}"
                build_data["pure_python"] = False
                build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        directory = getattr(self, "_build_directory", None)
        if directory is not None:
            directory.cleanup()


def _compile(source: Path, output: Path) -> bool:
    """Compile `source` into the extension module `output`; print why and return False if it fails."""
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler,
        *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"),
        "-O2",
        "-shared",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(output),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        print(f"secretd: cannot compile {source.name} ({exc}), so the masker uses its slower pure-Python path", file=sys.stderr)
        return False
    if result.returncode != 0:
        print(
            f"secretd: compiling {source.name} failed, so the masker uses its slower pure-Python path.\n"
            f"{shlex.join(command)}\n{result.stderr}",
            file=sys.stderr,
        )
        return False
    return True


def _compile_modules(root: Path, output: Path) -> list[Path]:
    """Compile the masker's modules with mypyc into the directory `output`; return the files written.

    `output` is emptied first, and stays empty when the compilation fails.
    """
    package = root / "daemon" / _PACKAGE
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    # Modules that an earlier version of this hook compiled beside the sources would shadow them.
    for name in [*(f"{module}{suffix}" for module in _COMPILED), f"_native__mypyc{suffix}"]:
        (package / name).unlink(missing_ok=True)
    for manifest in package.glob("_native.*.json"):
        manifest.unlink()
    # Read before compiling, so that a source edited meanwhile does not match.
    digests = {f"{module}.py": hashlib.sha256((package / f"{module}.py").read_bytes()).hexdigest()
               for module in _COMPILED}
    with tempfile.TemporaryDirectory(prefix="secretd-mypyc-") as work:
        command = [sys.executable, str(Path(__file__).resolve()), "mypyc", str(root / "daemon"), work]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            failure = str(exc)
        else:
            failure = (result.stderr or result.stdout)[-4000:] if result.returncode else ""
        built = [] if failure else sorted(Path(work, "lib", _PACKAGE).glob(f"*{suffix}"))
        if len(built) != len(_COMPILED) + 1:
            print(f"secretd: compiling the masker's modules with mypyc failed, so they run as plain Python.\n"
                  f"{failure or f'{len(built)} modules were built'}", file=sys.stderr)
            return []
        written = []
        for path in built:
            shutil.copyfile(path, output / path.name)
            written.append(output / path.name)
    manifest = output / "sources.json"
    manifest.write_text(json.dumps({"sources": digests}, indent=1, sort_keys=True) + "\n")
    return [*written, manifest]


def _tag() -> str:
    """Return this interpreter's extension tag, such as ``cpython-311-x86_64-linux-gnu``.

    It names the directory of the interpreter's compiled modules.
    """
    return sysconfig.get_config_var("EXT_SUFFIX").removeprefix(".").removesuffix(".so")


def _run_mypyc(source_root: str, work: str) -> None:
    """Compile the masker's modules under `source_root` into `work`/lib, with setuptools' build_ext.

    Run in a child process (see `_compile_modules`), because mypyc and
    setuptools print a great deal and change global state.
    """
    from setuptools import Distribution
    from mypyc.build import mypycify

    os.chdir(source_root)
    paths = [f"{_PACKAGE}/{module}.py" for module in _COMPILED]
    extensions = mypycify(
        # The build environment need not have hyperscan, whose calls stay plain Python calls anyway.
        ["--explicit-package-bases", "--ignore-missing-imports", *paths], opt_level="3", group_name=_GROUP, target_dir=os.path.join(work, "c")
    )
    distribution = Distribution({"name": "secretd-masking", "ext_modules": extensions})
    command = distribution.get_command_obj("build_ext")
    command.build_lib = os.path.join(work, "lib")
    command.build_temp = os.path.join(work, "temp")
    command.ensure_finalized()
    command.run()


if __name__ == "__main__" and sys.argv[1:2] == ["mypyc"]:
    _run_mypyc(*sys.argv[2:4])
