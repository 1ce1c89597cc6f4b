"""Matches in one text, the view or the raw output, and what a stream must hold back for it."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from functools import partial as partial_function
from itertools import accumulate
from typing import NamedTuple

from .boundaries import word_boundary_after, word_boundary_before
from .patterns import Hit, PatternTable
from .prefixes import TailIndex
from .runs import (
    BASE64_STD_ALPHABET,
    BASE64_URL_ALPHABET,
    LINE_START,
    MIN_WRAPPED_LINE,
    Break,
    LineState,
    OpenRun,
    Runs,
    joinable_breaks,
    line_state_at,
    unwrapped_stretches,
)
from .variants import ANYWHERE, BASE64_STD, BASE64_URL, WORD

__all__ = ["Finder", "Found", "Span", "TextState"]

Span = tuple[int, int]

_ALPHABETS = ((BASE64_STD, BASE64_STD_ALPHABET), (BASE64_URL, BASE64_URL_ALPHABET))
_RUN_ALPHABETS = (BASE64_STD_ALPHABET, BASE64_URL_ALPHABET)


class TextState(NamedTuple):
    """The state a stream keeps of one text: the bytes before its buffer, and the part scanned.

    `left` contains the last bytes (up to 4) before the buffer for the word
    check, `line` the state of the line the buffer starts in, and
    `open_runs` the base64 runs that reach the buffer (see
    `runs.OpenRun`). No anchor of the masker numbered `masker` ends in
    the first `quiet` bytes of the buffer, so a scan of the buffer starts a
    little before `quiet`, and looks at nothing below a floor a little
    lower still (`Finder.find`). A base64 run that reaches back to the
    floor starts at `run_starts` (standard, URL-safe).
    """

    left: bytes = b""
    line: LineState = LINE_START
    open_runs: tuple[OpenRun, ...] = ()
    masker: int = -1
    quiet: int = 0
    run_starts: tuple[int, int] = (0, 0)

    def after(self, text: bytes, found: Found, position: int) -> TextState:
        """Return the state of the text that starts at `position` of `text`."""
        if position >= 4:
            left = text[position - 4 : position]
        else:
            left = (self.left + text[:position])[-4:]
        open_runs = tuple(
            run._replace(position=run.position - position) for run in found.open_runs if run.position >= position
        )
        quiet = max(0, found.quiet - position)
        run_starts = (max(0, found.run_starts[0] - position), max(0, found.run_starts[1] - position))
        return TextState(left, line_state_at(text, self.line, position), open_runs, self.masker, quiet, run_starts)


class Found:
    """The matches in one text and the positions that more bytes could still bring into a match.

    `spans` are final. `tentative` are 4-7 character matches that wait for
    the next character. `claims` are positions where a later match may
    start. `runs` are starts of base64 runs at the end of the text that a
    later base64 match would extend back over, and a match that starts
    before the text ends and ends after it starts at or after `tail`.
    `open_runs` are base64 runs that reach the end of the text. `partial`
    is the claim of a text that the end of the text begins, one of
    `claims`. `quiet` and `run_starts` are those of `TextState`, for this
    text.
    """

    __slots__ = ("claims", "open_runs", "partial", "quiet", "run_starts", "runs", "spans", "tail", "tentative")

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.tentative: list[Span] = []
        self.claims: list[int] = []
        self.runs: list[int] = []
        self.tail = 0
        self.open_runs: list[OpenRun] = []
        self.partial: int | None = None
        self.quiet = 0
        self.run_starts = (0, 0)


class Finder:
    """Finds the matches of a masker's texts in one text."""

    def __init__(self, texts: dict[bytes, int]) -> None:
        self.table = PatternTable(texts)
        self._tail = TailIndex(texts)
        base64_lengths = [len(text) for text, kinds in texts.items() if kinds & (BASE64_STD | BASE64_URL)]
        self._has_base64 = bool(base64_lengths)
        # How far back from the end of a text a base64 match that is not
        # complete yet may start: its length, plus the line breaks that a
        # wrapped one may span.
        longest = max(base64_lengths, default=0)
        self._base64_reach = longest + 2 * (longest // MIN_WRAPPED_LINE + 2)
        # A stream rescans from this far below its quiet bytes (see `TextState`).
        self._margin = max(self.table.longest_literal, self._base64_reach) + 2

    @property
    def tail_reach(self) -> int | None:
        """How many bytes at the end of a text (and 4 before them) decide `Found.partial`, or None for all."""
        return self._tail.reach

    def find(
        self,
        text: bytes,
        final: bool,
        state: TextState,
        partial: tuple[int | None] | None = None,
        wrapped: bool = True,
    ) -> Found:
        """Find every match in `text`, which comes after the text `state` describes.

        Unless `final`, `text` may go on, and the result also gives what a
        stream must hold back. A caller that knows `Found.partial` already,
        from a text that ends in the same bytes, passes it in `partial`.
        With `wrapped` false, base64 texts that span a line break are not
        looked for: the raw output needs them only where its view has them
        too (`Masker.mask`).
        """
        found = Found()
        quiet = state.quiet
        floor = max(0, quiet - self._margin)
        scan_from = max(0, quiet - self.table.longest_literal)
        hits, first_anchor = self.table.hits(text, scan_from)
        breaks: list[Break] | Callable[[], list[Break]] = []
        first_wrapped = len(text)
        if self._has_base64:
            # Joinable breaks are needed from the floor on, where runs are
            # followed, and from where a run left open goes on.
            region = max(0, min([floor] + [run.position - 2 for run in state.open_runs]))
            if wrapped:
                breaks = joinable_breaks(text, state.line, region)
                wrapped_hits, first_wrapped = self._wrapped_hits(text, breaks, max(0, quiet - self._base64_reach))
                hits += wrapped_hits
            else:
                # Only a base64 run longer than 64 bytes (runs._NEAR) needs them.
                breaks = partial_function(joinable_breaks, text, state.line, region)
        floor_starts = dict(zip(_RUN_ALPHABETS, state.run_starts))
        runs = Runs(text, state.left, state.line, final, breaks, floor, floor_starts)

        open_runs: set[OpenRun] = set()
        for start, end, kinds in hits:
            if kinds & ANYWHERE:
                found.spans.append((start, end))
            elif kinds & WORD and word_boundary_before(text, start, state.left):
                after = word_boundary_after(text, end, final)
                if after is None:
                    found.tentative.append((start, end))
                elif after:
                    found.spans.append((start, end))
            for kind, alphabet in _ALPHABETS:
                if kinds & kind:
                    run_start, run_end, open_run = runs.around(start, end, alphabet)
                    found.spans.append((run_start, run_end))
                    if open_run is not None:
                        open_runs.add(open_run)
        for open_run in state.open_runs:
            run_end, again = runs.continued(open_run)
            if run_end > open_run.position:
                found.spans.append((open_run.position, run_end))
            if again is not None:
                open_runs.add(again)
        found.open_runs = sorted(open_runs)
        if final:
            return found

        found.claims = [start for start, _ in found.tentative]
        found.claims += [open_run.position for open_run in found.open_runs]
        if partial is None:
            found.partial = self._tail.partial_start(
                text, lambda position: word_boundary_before(text, position, state.left)
            )
        else:
            found.partial = partial[0]
        if found.partial is not None:
            found.claims.append(found.partial)
        if self._has_base64:
            for alphabet in _RUN_ALPHABETS:
                trailing = runs.trailing_start(alphabet)
                if trailing is not None:
                    found.runs.append(trailing)
            found.tail = max(0, len(text) - self._base64_reach)

        # NOTE: held bytes after the first anchor are scanned again on every
        # feed, so a stream fed a byte at a time while it holds a long
        # stretch with matches does work in proportion to that stretch.
        found.quiet = min(first_anchor, first_wrapped)
        next_floor = found.quiet - self._margin
        if next_floor >= max(floor, 1):
            std, url = (runs.start_of(next_floor, alphabet) for alphabet in _RUN_ALPHABETS)
            found.run_starts = (std, url)
        elif next_floor > 0:
            found.quiet = 0  # the run starts there are not known
        return found

    def _wrapped_hits(self, text: bytes, breaks: list[Break], clip: int) -> tuple[list[Hit], int]:
        """Return the base64 matches from `clip` on that span a joinable line break, and the start of the first.

        Matches are given by their first and last byte in `text`.
        """
        hits = []
        first = len(text)
        for stretch in unwrapped_stretches(text, breaks):
            if stretch.end <= clip:
                continue
            pieces = stretch.pieces(clip)
            joined = b"".join(text[start:end] for start, end in pieces)
            offsets = list(accumulate((end - start for start, end in pieces), initial=0))
            for start, end, kinds in self.table.hits(joined)[0]:
                kinds &= BASE64_STD | BASE64_URL
                first_piece = bisect_right(offsets, start) - 1
                last_piece = bisect_right(offsets, end - 1) - 1
                if kinds and first_piece != last_piece:
                    text_start = pieces[first_piece][0] + start - offsets[first_piece]
                    hits.append((text_start, pieces[last_piece][0] + end - offsets[last_piece], kinds))
                    first = min(first, text_start)
        return hits, first
