"""Masking of secret values in output bytes, one-shot and streaming.

`Masker.build` compiles every text that counts as one of a scope's values
(the value, its trimmed and quote-stripped forms, its long lines, and their
JSON, percent, shell and base64 encodings) into Hyperscan databases. It
lists the values it had to skip. `Masker.mask` replaces every match in a
buffer, found in the output with its terminal escape sequences left out or
in the output as it is, and overlapping or touching matches share one
placeholder. `MaskStream` gives the same result for output that arrives in
chunks. It holds back only the bytes that may still become part of a match.
"""

def _compiled_directory() -> str | None:
    """Return the directory of compiled modules to import in place of the sources, or None.

    The build (hatch_build.py) compiles the modules with mypyc into
    `_compiled/<tag>/` and records the SHA-256 digest of each source.
    Compiled modules whose sources have changed since would run other code
    than the sources contain, so then the sources are used, with a warning.
    A source that is missing (an install without sources) has nothing to
    disagree with.
    """
    import hashlib
    import json
    import sysconfig
    import warnings
    from pathlib import Path

    if __name__ != "secretd.daemon.masking":
        return None  # compiled for this name only, not for a copy loaded under another
    package = Path(__file__).parent
    tag = (sysconfig.get_config_var("EXT_SUFFIX") or "").removeprefix(".").removesuffix(".so")
    directory = package / "_compiled" / tag
    try:
        digests = json.loads((directory / "sources.json").read_bytes())["sources"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        digests = {}
        changed = [f"sources.json ({type(exc).__name__})"]
    else:
        changed = []
    for name, digest in sorted(digests.items()):
        try:
            current = hashlib.sha256((package / name).read_bytes()).hexdigest()
        except FileNotFoundError:
            continue
        except OSError as exc:
            current = type(exc).__name__
        if current != digest:
            changed.append(name)
    if changed:
        warnings.warn(
            f"the compiled masker modules in {directory} do not match {', '.join(changed)}, so the masker runs "
            "from its sources, about 1.7 times slower per stream chunk. Rebuild them with make (or pip install again).",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return str(directory)


_compiled = _compiled_directory()
if _compiled is not None:
    # Searched first, so that each compiled module is imported instead of its source.
    __path__.insert(0, _compiled)

import importlib.machinery as _machinery  # noqa: E402

from . import matcher as _matcher  # noqa: E402
from .matcher import Masker, SkippedValue  # noqa: E402
from .policy import MAX_VALUE_BYTES, MaskPolicy, Tier, value_tier  # noqa: E402
from .stream import MaskStream  # noqa: E402

#: Whether the masker's modules run compiled by mypyc (hatch_build.py) rather than from their sources.
COMPILED = isinstance(_matcher.__loader__, _machinery.ExtensionFileLoader)

__all__ = ["COMPILED", "MAX_VALUE_BYTES", "MaskPolicy", "MaskStream", "Masker", "SkippedValue", "Tier", "value_tier"]
