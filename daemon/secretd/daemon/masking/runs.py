"""Base64 runs around a match, across the line breaks of wrapped base64.

A base64 match is extended over the run of base64 characters around it,
then over "=" padding. Encoders wrap long output: GNU `base64` and MIME at
76 columns, OpenSSL and PEM at 64, OpenSSH private keys at 70. A line
break is therefore part of a run when it is "joinable":

- it is "\\n" or "\\r\\n";
- the line before it has at least `MIN_WRAPPED_LINE` bytes, all of them
  standard or URL-safe base64 characters, from the start of the line;
- a base64 character follows it.

A run of one alphabet continues across a joinable break when the bytes on
both sides are in that alphabet. The output with its joinable breaks
removed is searched for base64 texts that span a break (`unwrapped_stretches`).

Text positions here are positions in one text, the view or the raw output
(see `escapes`). A stream gives the state of the line its buffer starts
in as a `LineState`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

try:
    from . import _scan
except ImportError:  # not compiled: the regular expression below does the same
    _scan = None  # type: ignore[assignment]

__all__ = [
    "BASE64_STD_ALPHABET",
    "BASE64_URL_ALPHABET",
    "LINE_START",
    "MIN_WRAPPED_LINE",
    "LineState",
    "OpenRun",
    "Runs",
    "Break",
    "Stretch",
    "joinable_breaks",
    "line_state_at",
    "unwrapped_stretches",
]

BASE64_STD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
BASE64_URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_WRAP_ALPHABET = BASE64_STD_ALPHABET + b"-_"

# NOTE: lines shorter than this, and indented lines (base64 in a YAML block
# scalar), are not joined, so a value split across them is not masked.
MIN_WRAPPED_LINE = 48

_SETS = {alphabet: frozenset(alphabet) for alphabet in (BASE64_STD_ALPHABET, BASE64_URL_ALPHABET)}
# Translation tables that map the bytes of an alphabet to 1 and all others
# to 0, so that find and rfind locate the ends of a run at C speed.
_MEMBERSHIP = {
    alphabet: bytes.maketrans(bytes(range(256)), bytes(int(byte in members) for byte in range(256)))
    for alphabet, members in _SETS.items()
}
_PADDING = re.compile(rb"=*")
_CHARACTERS = {
    BASE64_STD_ALPHABET: re.compile(rb"[A-Za-z0-9+/]*"),
    BASE64_URL_ALPHABET: re.compile(rb"[A-Za-z0-9\-_]*"),
}
# Most runs are short words. A run is first looked for within this many
# bytes of a position, and the membership map is built only for longer ones.
_NEAR = 64
# A line of at least MIN_WRAPPED_LINE base64 characters after a "\n",
# followed by a joinable break. The line at the start of a text is checked
# apart, with the state of the line before the text. The possessive
# quantifiers (Python 3.11) keep a long line from being matched again at
# every length.
_FULL_LINE = re.compile(rb"\n[A-Za-z0-9+/\-_]{%d,}+(?=(\r?\n)[A-Za-z0-9+/\-_])" % MIN_WRAPPED_LINE)
_WRAP_CHARS = re.compile(rb"[A-Za-z0-9+/\-_]*+")
_WRAP_SET = frozenset(BASE64_STD_ALPHABET + b"-_")

# A joinable line break: (start of the line before it, start, end).
Break = tuple[int, int, int]


class LineState(NamedTuple):
    """The part of a line before some position.

    `length` is the number of base64 characters from the start of the line,
    or -1 when the line has any other byte. `carriage_return` is true
    when one "\\r" follows them.
    """

    length: int
    carriage_return: bool = False


LINE_START = LineState(0)


class OpenRun(NamedTuple):
    """A base64 match whose run may go on after the end of the text.

    The run is extended from `position` in the next text of the stream:
    over `alphabet` characters and joinable breaks, or only over "=" when
    `padding` is true.
    """

    alphabet: bytes
    position: int
    padding: bool


def _match_end(pattern: re.Pattern[bytes], text: bytes, position: int, end: int | None = None) -> int:
    """Return where `pattern`, which matches the empty string, stops matching at `position`."""
    match = pattern.match(text, position) if end is None else pattern.match(text, position, end)
    assert match is not None, "the pattern matches the empty string"
    return match.end()


def line_state_at(text: bytes, before: LineState, position: int) -> LineState:
    """Return the state at `position` of the line it is in; `before` is the state at the text start."""
    newline = text.rfind(b"\n", 0, position)
    if newline >= 0:
        length, line = 0, text[newline + 1 : position]
    elif before.carriage_return:
        if position > 0:
            return LineState(-1)  # the "\r" before the text ended no line
        return before
    else:
        length, line = before.length, text[:position]
    if length < 0:
        return LineState(-1)
    carriage_return = line.endswith(b"\r")
    if carriage_return:
        line = line[:-1]
    if line.translate(None, _WRAP_ALPHABET):
        return LineState(-1)
    return LineState(length + len(line), carriage_return)


def _full_before(text: bytes, before: LineState, position: int) -> bool:
    """Tell whether the line that ends at `position` is long enough and all base64 characters."""
    return line_state_at(text, before, position).length >= MIN_WRAPPED_LINE


def joinable_breaks(text: bytes, before: LineState, start: int = 0) -> list[Break]:
    """Return the joinable line breaks of `text`, from that of the line around `start` on."""
    breaks = []
    newline = text.rfind(b"\n", 0, start)
    if newline < 0:
        newline = text.find(b"\n")
        if newline < 0:
            return []
        # The first line may have begun before the text.
        break_start = newline - 1 if newline and text[newline - 1] == 0x0D else newline
        following = text[newline + 1 : newline + 2]
        if following and following[0] in _WRAP_SET and _full_before(text, before, break_start):
            breaks.append((0, break_start, newline + 1))
    if _scan is not None:
        breaks += _scan.full_lines(text, newline)
    else:
        breaks += [(match.start() + 1, *match.span(1)) for match in _FULL_LINE.finditer(text, newline)]
    return breaks


class Stretch(NamedTuple):
    """Lines joined by joinable breaks: from `start` to the end of the base64 after the last break."""

    start: int
    end: int
    breaks: list[tuple[int, int]]

    def pieces(self, clip: int) -> list[tuple[int, int]]:
        """Return the (start, end) parts between the breaks, from `clip` on."""
        pieces = []
        position = max(self.start, clip)
        for start, end in self.breaks:
            if end <= position:
                continue
            if start > position:
                pieces.append((position, start))
            position = max(position, end)
        pieces.append((position, self.end))
        return pieces


def unwrapped_stretches(text: bytes, breaks: list[Break]) -> list[Stretch]:
    """Group joinable `breaks` into stretches of wrapped lines."""
    stretches: list[Stretch] = []
    for line_start, start, end in breaks:
        if stretches and stretches[-1].breaks[-1][1] == line_start:
            stretches[-1].breaks.append((start, end))
        else:
            stretches.append(Stretch(line_start, 0, [(start, end)]))
    return [
        stretch._replace(end=_match_end(_PADDING, text, _match_end(_WRAP_CHARS, text, stretch.breaks[-1][1])))
        for stretch in stretches
    ]


class Runs:
    """The base64 runs of one text, each found once per text.

    `left` contains the text bytes (up to 4) before `text` and `before` the
    state of the line `text` starts in. Unless `final`, `text` may go on.
    `breaks` are the joinable breaks from the line around `floor` on, or
    a function that returns them, called the first time they are needed.
    Below `floor` the text is not looked at: a run that reaches back to
    `floor` starts where `floor_starts` gives for its alphabet, and every
    position asked about is at or above `floor`.
    """

    def __init__(
        self,
        text: bytes,
        left: bytes,
        before: LineState,
        final: bool,
        breaks: list[Break] | Callable[[], list[Break]],
        floor: int = 0,
        floor_starts: dict[bytes, int] | None = None,
    ) -> None:
        self._text = text
        self._left = left
        self._before = before
        self._final = final
        self._breaks = breaks
        self._floor = floor
        self._floor_starts = floor_starts or {}
        # The last run found per alphabet: (start, end of its characters, end, open run).
        self._last: dict[bytes, tuple[int, int, int, OpenRun | None]] = {}
        self._mapped: dict[bytes, bytearray] = {}

    def _membership(self, alphabet: bytes) -> bytearray:
        """Return the text with each byte mapped to 1 if a run of `alphabet` may contain it, else to 0.

        Those are the bytes of the alphabet and the joinable breaks with a
        byte of the alphabet on both sides.
        """
        mapped = self._mapped.get(alphabet)
        if mapped is None:
            text = self._text
            floor = self._floor
            members = _SETS[alphabet]
            mapped = self._mapped[alphabet] = bytearray(text[floor:].translate(_MEMBERSHIP[alphabet]))
            if callable(self._breaks):
                self._breaks = self._breaks()
            for _, start, end in self._breaks:
                before = text[start - 1] if start else self._byte_before_text()
                if end > floor and before in members and text[end] in members:
                    low = max(start, floor)
                    mapped[low - floor : end - floor] = b"\x01" * (end - low)
        return mapped

    def around(self, start: int, end: int, alphabet: bytes) -> tuple[int, int, OpenRun | None]:
        """Return the (start, end, open run) of the run around the match [start, end)."""
        last = self._last.get(alphabet)
        if last is not None and last[0] <= start and end <= last[1]:
            return last[0], last[2], last[3]
        run_start = self.start_of(start, alphabet)
        chars_end, run_end, open_run = self._extend(end, alphabet, padding=False)
        self._last[alphabet] = (run_start, chars_end, run_end, open_run)
        return run_start, run_end, open_run

    def continued(self, open_run: OpenRun) -> tuple[int, OpenRun | None]:
        """Return the (end, open run) of a run that the text before left open at `open_run.position`."""
        _, run_end, again = self._extend(open_run.position, open_run.alphabet, open_run.padding)
        return run_end, again

    def trailing_start(self, alphabet: bytes) -> int | None:
        """Return where the run of `alphabet` that more bytes could continue starts, or None."""
        text = self._text
        end = len(text)
        pending = self._pending_break()
        if pending is not None:
            end = pending
            if end == 0:
                return 0 if self._byte_before_text() in _SETS[alphabet] else None
        if end == 0 or text[end - 1] not in _SETS[alphabet]:
            return None
        return self.start_of(end, alphabet)

    def start_of(self, position: int, alphabet: bytes) -> int:
        """Return where the run of `alphabet` that ends at `position` (at or above the floor) starts."""
        floor = self._floor
        low = max(floor, position - _NEAR)
        text = self._text
        before_run = text[low:position].rstrip(alphabet)
        if before_run:
            start = low + len(before_run)
            last = before_run[-1]
            if last not in b"\r\n":
                return start
            if last == 0x0A:
                # The run reaches back over this "\n" only if its break is joinable, which
                # needs a full line before it. Most lines are not, and then the membership
                # map, which costs a pass over the whole text, is not needed.
                newline = start - 1
                break_start = newline - 1 if newline > 0 and text[newline - 1] == 0x0D else newline
                if not _full_before(text, self._before, break_start):
                    return start
        other = self._membership(alphabet).rfind(b"\x00", 0, position - floor)
        if other >= 0:
            return floor + other + 1
        return self._floor_starts.get(alphabet, 0) if floor else 0

    def _byte_before_text(self) -> int | None:
        """Return the last byte of the line before the text, not counting a "\r" of its break."""
        left = self._left[:-1] if self._before.carriage_return else self._left
        return left[-1] if left else None

    def _pending_break(self, position: int | None = None) -> int | None:
        """Return the start of a line break that ends the text at or after `position` and that more bytes could make joinable."""
        text = self._text
        if self._final:
            return None
        start = len(text)
        if text.endswith(b"\r\n"):
            start -= 2
        elif text.endswith((b"\n", b"\r")):
            start -= 1
        else:
            return None
        if position is not None and start != position:
            return None
        return start if _full_before(text, self._before, start) else None

    def _extend(self, position: int, alphabet: bytes, padding: bool) -> tuple[int, int, OpenRun | None]:
        """Extend a run forward from `position`; return (end of its characters, end, open run)."""
        text = self._text
        size = len(text)
        if not padding:
            near = min(size, position + _NEAR)
            stop = _match_end(_CHARACTERS[alphabet], text, position, near)
            if stop < near and text[stop] not in b"\r\n":
                position = stop
            else:
                other = self._membership(alphabet).find(b"\x00", position - self._floor)
                position = size if other < 0 else self._floor + other
            if not self._final and (position == size or self._pending_break(position) is not None):
                # The text ends in the run, or in a break that may join it to more.
                return position, position, OpenRun(alphabet, position, False)
        chars_end = position
        end = _match_end(_PADDING, text, position)
        if end == size and not self._final:
            return chars_end, end, OpenRun(alphabet, end, True)
        return chars_end, end, None
