"""Word boundaries around a match: whether the characters next to it are word characters."""

from __future__ import annotations

import re

__all__ = ["word_boundary_after", "word_boundary_before"]

# Word characters in the sense of Python's Unicode `\w`: letters, digits of
# any script, and "_".
_WORD_CHAR = re.compile(r"\w")
_ASCII_WORD = [bool(_WORD_CHAR.match(chr(byte))) for byte in range(128)]


def _is_word_char(encoded: bytes) -> bool:
    """Tell whether `encoded` is one UTF-8 character that is a word character."""
    try:
        char = encoded.decode()
    except UnicodeDecodeError:
        return False
    return len(char) == 1 and _WORD_CHAR.match(char) is not None


def _utf8_length(lead: int) -> int:
    """Return the length of the UTF-8 sequence `lead` starts, or 1 if it starts none."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def word_boundary_before(view: bytes, start: int, left_context: bytes) -> bool:
    """Tell whether the character before `start` is not a word character.

    `view` is a text searched for matches (the view or the original
    bytes), and `left_context` contains the bytes (up to 4) that precede
    it. When it is empty, the start of `view` is the start of the output
    and counts as a boundary. Bytes that are not valid UTF-8 are not word
    characters.
    """
    if start >= 4:
        before = view[start - 4 : start]
    else:
        before = left_context + view[:start]
    if not before:
        return True
    last = before[-1]
    if last < 0x80:
        return not _ASCII_WORD[last]
    first = len(before) - 1
    while first > 0 and len(before) - first < 4 and 0x80 <= before[first] <= 0xBF:
        first -= 1
    return not _is_word_char(before[first:])


def word_boundary_after(view: bytes, end: int, final: bool) -> bool | None:
    """Tell whether the character at `end` is not a word character.

    Returns None when that is not known yet: `view` is not final and ends
    at `end` or inside the character that starts there.
    """
    if end >= len(view):
        return True if final else None
    lead = view[end]
    if lead < 0x80:
        return not _ASCII_WORD[lead]
    length = _utf8_length(lead)
    if length == 1:
        return True
    encoded = view[end : end + length]
    if len(encoded) < length:
        if final or any(not 0x80 <= byte <= 0xBF for byte in encoded[1:]):
            return True
        return None
    return not _is_word_char(encoded)
