"""Terminal escape sequences in output bytes, and the view of the output without them.

A terminal may colour part of a secret, so matching runs over the output
with every escape sequence left out (the view), and each match is mapped
back to the original bytes from its first to its last matched byte. It
also runs over the original bytes, which finds a secret inside the text of
an OSC, DCS, SOS, PM or APC sequence (a window title, a hyperlink), or one
that a malformed sequence would swallow the start of.

Recognised sequences, each at most about 4 KiB long:

- CSI: ESC [ parameters intermediates final (colours, cursor movement);
- OSC: ESC ] text ended by BEL or ESC \\ (titles, hyperlinks);
- DCS, SOS, PM and APC: ESC P, X, ^ or _ text ended by ESC \\;
- every other escape: ESC, optional intermediates, one final byte.

An ESC that starts none of these is an ordinary byte.

NOTE: a value whose first byte a stray ESC takes into a two-byte sequence,
and which also has escape sequences inside it, is found in neither text.

The view is built by the C module `_scan` when it is installed (the
wheel and editable installs compile it), otherwise by a regular
expression, about 25 times slower on coloured output. Both give the same
result; `tests/test_scan_c.py` compares them.
"""

from __future__ import annotations

import re
import bisect
from collections.abc import Sequence
from itertools import accumulate

try:
    from . import _scan
except ImportError:  # not compiled: see the module docstring
    _scan = None  # type: ignore[assignment]

__all__ = ["ACCELERATED", "View", "python_split"]

#: Whether views are built by the C module.
ACCELERATED = _scan is not None

_SEQUENCE = (
    rb"\x1b(?:"
    rb"\[[\x30-\x3f]{0,64}[\x20-\x2f]{0,16}[\x40-\x7e]"
    rb"|\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)"
    rb"|[PX^_][^\x1b]{0,4096}\x1b\\"
    rb"|[\x20-\x2f]{1,16}[\x30-\x7e]"
    rb"|[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]"
    rb")"
)
_SPLIT = re.compile(b"(" + _SEQUENCE + b")")

# The prefixes of sequences that more bytes may still complete, tried on the
# ESCs after the last complete sequence. The bounds equal _SEQUENCE's.
_INCOMPLETE = re.compile(
    rb"\x1b(?:"
    rb"\[[\x30-\x3f]{0,64}[\x20-\x2f]{0,16}"
    rb"|\][^\x07\x1b]{0,4096}\x1b?"
    rb"|[PX^_][^\x1b]{0,4096}\x1b?"
    rb"|[\x20-\x2f]{0,16}"
    rb")"
)


class View:
    """The bytes of a buffer outside escape sequences, with a map back to the buffer.

    Positions in `data` are view positions, and positions in the buffer are
    original positions. When the buffer is not final and ends inside an
    escape sequence, that sequence is left out of `data` and `cut` is its
    original position. Otherwise `cut` is None. A boundary is an original
    position outside every sequence or at its first byte.
    """

    __slots__ = ("_bisect_right", "_original_starts", "_segment_lengths", "_view_starts", "cut", "data", "size")

    def __init__(self, buffer: bytes, final: bool) -> None:
        self.size = len(buffer)
        self.cut: int | None = None
        if b"\x1b" not in buffer:
            self.data = buffer
            self._view_starts: Sequence[int] | None = None
            return

        if _scan is not None:
            data, starts, view_starts, lengths = _scan.split(buffer)
            # Native 64-bit arrays, searched without an int object per item.
            self._bisect_right = _scan.bisect_right
            original_starts: Sequence[int] = memoryview(starts).cast("q")
            self._view_starts = memoryview(view_starts).cast("q")
            segment_lengths: Sequence[int] = memoryview(lengths).cast("q")
        else:
            data, original_starts, segment_lengths = python_split(buffer)
            self._bisect_right = bisect.bisect_right
            self._view_starts = list(accumulate(segment_lengths, initial=0))[:-1]
        if not final:
            last_start = original_starts[-1]
            cut = _incomplete_start(buffer[last_start:])
            if cut is not None:
                self.cut = last_start + cut
                data = data[: len(data) - segment_lengths[-1] + cut]
                segment_lengths = list(segment_lengths)
                segment_lengths[-1] = cut
        self._original_starts = original_starts
        self._segment_lengths = segment_lengths
        self.data = data

    def original(self, position: int) -> int:
        """Return the original position of the view byte at `position`."""
        if self._view_starts is None:
            return position
        index = self._bisect_right(self._view_starts, position) - 1
        return self._original_starts[index] + position - self._view_starts[index]

    def original_end(self, end: int) -> int:
        """Return the original position just after the view byte before `end`."""
        return self.original(end - 1) + 1

    def view_position(self, original: int) -> int:
        """Return how many view bytes lie before the original position `original`."""
        if self._view_starts is None:
            return original
        index = self._bisect_right(self._original_starts, original) - 1
        if index < 0:
            return 0
        offset = min(original - self._original_starts[index], self._segment_lengths[index])
        return self._view_starts[index] + offset

    @property
    def has_escapes(self) -> bool:
        """Whether the buffer contains an ESC byte."""
        return self._view_starts is not None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Return the original span from the view byte at `start` to the one before `end`."""
        if self._view_starts is None:
            return start, end
        return self.original(start), self.original_end(end)

    def original_claim(self, position: int) -> int:
        """Return an original position at or before that of the view byte at `position`.

        `position` may be the view length, for a byte that has not arrived.
        """
        if position < len(self.data):
            return self.original(position)
        return self.original_end(position) if position else 0

    def boundary_at_or_before(self, original: int) -> int:
        """Return the last boundary at or before `original`."""
        if self._view_starts is None:
            return original
        index = self._bisect_right(self._original_starts, original) - 1
        return min(original, self._original_starts[index] + self._segment_lengths[index])

    def joins(self, end: int, start: int) -> bool:
        """Tell whether a match from `start` merges into one that ends at `end`.

        They merge when they overlap or touch, or when only bytes of escape
        sequences lie between them, as between two parts of one coloured
        word. Moving each start back over the escape bytes before it turns
        this into plain interval merging, so the result does not depend on
        the order in which matches are merged. Whether a match after `cut`
        merges is not known yet, and counts as no.
        """
        if start <= end:
            return True
        if self._view_starts is None or (self.cut is not None and start > self.cut):
            # Bytes of an unfinished sequence may yet turn out to be view bytes.
            return False
        before = self.view_position(start)
        return (self.original_end(before) if before else 0) <= end

    def boundary_at_or_after(self, original: int) -> int:
        """Return the first original position at or after `original` not inside a sequence."""
        if self._view_starts is None:
            return original
        index = self._bisect_right(self._original_starts, original) - 1
        if index < 0 or original - self._original_starts[index] <= self._segment_lengths[index]:
            return original
        following = index + 1
        return self._original_starts[following] if following < len(self._original_starts) else self.size


def python_split(buffer: bytes) -> tuple[bytes, list[int], list[int]]:
    """Return the view of `buffer`, the original start of each stretch between sequences, and its length.

    What `_scan.split` does, with the regular expression.
    """
    parts = _SPLIT.split(buffer)
    texts = parts[0::2]
    offsets = list(accumulate(map(len, parts), initial=0))
    return b"".join(texts), offsets[0::2][: len(texts)], [len(text) for text in texts]


def _incomplete_start(text: bytes) -> int | None:
    """Return the offset in `text` of an escape sequence that may still complete."""
    position = text.find(b"\x1b")
    while position != -1:
        if _INCOMPLETE.fullmatch(text, position):
            return position
        position = text.find(b"\x1b", position + 1)
    return None
