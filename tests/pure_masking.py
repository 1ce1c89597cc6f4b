"""The masker's modules loaded from their Python sources, for tests that replace their internals.

A build compiles those modules with mypyc (hatch_build.py), and the
classes and functions of a compiled module cannot be replaced with
`monkeypatch`: compiled code calls them directly. Tests that count calls
or swap a helper use this copy, a package of another name loaded from the
same sources, with the C module `_scan` as the daemon has it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import secretd.daemon.masking

__all__ = ["NAME", "load"]

NAME = "secretd_pure_masking"


def load() -> ModuleType:
    """Return the package loaded from the Python sources (once per process)."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    directory = Path(secretd.daemon.masking.__file__).parent
    # The package's __init__ adds the compiled modules' directory to __path__
    # only under its own name, so this copy imports the sources.
    spec = importlib.util.spec_from_file_location(
        NAME, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = package
    spec.loader.exec_module(package)
    for module in ("database", "escapes", "matcher", "patterns", "runs", "stream"):
        importlib.import_module(f"{NAME}.{module}")
    return package
