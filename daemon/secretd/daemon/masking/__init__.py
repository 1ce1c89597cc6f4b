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

def _check_compiled() -> None:
    """Raise ImportError if the compiled modules (hatch_build.py) were built from other sources than those beside them.

    Python imports an extension module in preference to the source of the
    same name, so in an editable install an edited source would otherwise
    be ignored without a word.
    """
    import hashlib
    import json
    import sysconfig
    from pathlib import Path

    directory = Path(__file__).parent
    manifest = directory / ("_native" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so").removesuffix(".so") + ".json")
    try:
        digests = json.loads(manifest.read_bytes())["sources"]
    except FileNotFoundError:
        return
    changed = sorted(
        name for name, digest in digests.items()
        if hashlib.sha256((directory / name).read_bytes()).hexdigest() != digest
    )
    if changed:
        raise ImportError(
            f"the compiled masker modules in {directory} were built from other versions of {', '.join(changed)}. "
            "Rebuild them (make, or pip install again) or remove them (make clean)."
        )


_check_compiled()

from .matcher import Masker, SkippedValue  # noqa: E402  (after the check, which must run first)
from .policy import MAX_VALUE_BYTES, MaskPolicy, Tier, value_tier
from .stream import MaskStream
from . import matcher as _matcher  # noqa: E402

#: Whether the masker's modules run compiled by mypyc (hatch_build.py) rather than from their sources.
COMPILED = not _matcher.__file__.endswith(".py")

__all__ = ["COMPILED", "MAX_VALUE_BYTES", "MaskPolicy", "MaskStream", "Masker", "SkippedValue", "Tier", "value_tier"]
