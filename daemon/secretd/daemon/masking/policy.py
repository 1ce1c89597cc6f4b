"""Masking policy: placeholder, variant switch, hold limit and length tiers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_MAX_HELD",
    "MAX_VALUE_BYTES",
    "MIN_ANYWHERE_CHARS",
    "MIN_MAX_HELD",
    "MIN_WORD_CHARS",
    "WHITESPACE",
    "MaskPolicy",
    "Tier",
    "value_tier",
]

# Whitespace means the six ASCII whitespace characters (what `bytes.isspace`
# accepts). Trimming, the length tiers and whitespace-tolerant matching all
# use this one set, so a value and the bytes it is matched against agree.
WHITESPACE = " \t\n\r\x0b\x0c"

MIN_WORD_CHARS = 4
MIN_ANYWHERE_CHARS = 8

# Maximum length of a value's UTF-8 form. No variant is more than 6 times
# as long as the value (JSON writes a control byte as `\u00XX`), so every
# variant stays under DEFAULT_MAX_HELD / 2.
MAX_VALUE_BYTES = 16 * 1024

DEFAULT_MAX_HELD = 256 * 1024

# An escape sequence is recognised only within 4 KiB, so a stream must be
# able to hold at least a few times that.
MIN_MAX_HELD = 16 * 1024

Tier = Literal["too_short", "word", "anywhere"]


def value_tier(value: str) -> Tier:
    """Classify a value by the length in characters of its trimmed form.

    Under 4 characters a value is never masked (`"too_short"`), from 4 to 7 it
    is masked only as a whole word (`"word"`), and from 8 on it is masked
    anywhere with every variant (`"anywhere"`).
    """
    length = len(value.strip(WHITESPACE))
    if length < MIN_WORD_CHARS:
        return "too_short"
    if length < MIN_ANYWHERE_CHARS:
        return "word"
    return "anywhere"


@dataclass(frozen=True)
class MaskPolicy:
    """Settings shared by every masker and stream of a daemon.

    `placeholder` replaces each merged run of matched bytes. `variants=False`
    masks only the value itself, its trimmed and quote-stripped forms and its
    long lines, without any encoded variant. `max_held` bounds the bytes a
    stream holds back while they may still turn out to be part of a secret.
    `MaskStream` documents what happens when the bound is reached.
    """

    placeholder: bytes = b"<secret-hidden>"
    variants: bool = True
    max_held: int = DEFAULT_MAX_HELD

    def __post_init__(self) -> None:
        if not isinstance(self.placeholder, bytes):
            raise TypeError(f"placeholder must be bytes, got {type(self.placeholder).__name__}")
        if not isinstance(self.max_held, int) or self.max_held < MIN_MAX_HELD:
            raise ValueError(f"max_held must be an int of at least {MIN_MAX_HELD} bytes, got {self.max_held!r}")
