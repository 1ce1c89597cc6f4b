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

from .matcher import Masker, SkippedValue
from .policy import MAX_VALUE_BYTES, MaskPolicy, Tier, value_tier
from .stream import MaskStream

__all__ = ["MAX_VALUE_BYTES", "MaskPolicy", "MaskStream", "Masker", "SkippedValue", "Tier", "value_tier"]
