"""Compiled patterns: Hyperscan databases of anchors, verified in Python.

Every text to mask is split into literal tokens at its internal whitespace
runs. A whitespace run inside a text matches any non-empty run of
whitespace in the output, but whitespace at the ends of a text is literal.

Hyperscan does not compile every text as it is. It scans the text for
one anchor per text, and each hit is then checked against the exact texts
in Python:

- The anchor of a short single-token text is the whole text, so a hit is
  checked with one comparison. A longer text is anchored on its first
  `ANCHOR_MAX` bytes. A text with whitespace runs is anchored on its longest
  token, or on a few consecutive short tokens, and the other tokens are
  checked around the hit. Hyperscan 0.9.1 compiles long patterns slowly
  (0.3 s for one 3 KiB key with 50 whitespace runs) and rejects
  expressions longer than 16 000 characters.
- Single-token anchors go into a database built by the literal compiler,
  and multi-token anchors (and literals with a NUL byte, see `database`)
  into a regex database. Both are scanned in turn.
"""

from __future__ import annotations

import math
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import hyperscan

from .database import Database, is_literal, literal_regex
from .periodic import periodic_extent, smallest_period
from .policy import WHITESPACE
from .variants import ANYWHERE

__all__ = ["ANCHOR_MAX", "Hit", "PatternTable", "Walk", "skip_whitespace", "split_tokens"]

ANCHOR_MAX = 256


_WHITESPACE_BYTES = WHITESPACE.encode()
_WHITESPACE_CLASS = rb"[\t\n\x0b\x0c\r ]+"

# A hit of an anchor shorter than this in bytes is too frequent to check
# in Python, so a short token takes its neighbours into its anchor.
_ANCHOR_MIN = 8

# NOTE: dense hits that do not form one periodic stretch of 4 KiB or more
# (lines of wrapped base64, many different texts) still cost a call of the
# Python match handler each.
#
# A scan looks for a periodic stretch to skip after this many overlapping
# hits in a row, then after twice as many, and so on. A skip must move the
# scan at least _MIN_SKIP bytes on, so a scan restarts at most once per 4 KiB.
_DENSE_HITS = 64
_MIN_SKIP = 4096

# Literal anchors per database, and how many databases may be made only
# to compile on more CPUs (see `_compile_chunks`).
_CHUNK_MAX = 50_000
_CHUNK_MIN = 10_000
_PARALLEL_MAX = 4

# Hyperscan 5.4 scans small literal sets slowly on this machine: 10 to
# 60 literals took 250-860 us per MiB of build output, against 160-200 us
# for 100 to 1 000 (a 2-core AMD EPYC with AVX-512). A literal database
# with `_PAD_MIN` to `_PAD_TO` anchors is therefore padded with decoys up
# to `_PAD_TO`. A decoy is 16 bytes from 0xF8-0xFF, which never occur in
# UTF-8, and has no text, so a hit on one (in binary output) masks nothing.
_PAD_MIN = 8
_PAD_TO = 100
_DECOY_BYTES = 16

Hit = tuple[int, int, int]  # start, end and match kinds of a text found in a scan


def split_tokens(text: bytes) -> tuple[bytes, ...]:
    """Split a text at its internal whitespace runs, keeping whitespace at its ends in the end tokens."""
    # bytes.split() splits at runs of exactly the six WHITESPACE bytes.
    tokens = text.split()
    if not tokens or (len(tokens) == 1 and len(tokens[0]) == len(text)):
        return (text,)
    leading = text[: len(text) - len(text.lstrip(_WHITESPACE_BYTES))]
    trailing = text[len(text.rstrip(_WHITESPACE_BYTES)) :]
    tokens[0] = leading + tokens[0]
    tokens[-1] = tokens[-1] + trailing
    return tuple(tokens)


def skip_whitespace(view: bytes, position: int) -> int:
    """Return the end of the whitespace run that starts at `position`."""
    while position < len(view) and view[position] in _WHITESPACE_BYTES:
        position += 1
    return position


@dataclass(frozen=True)
class Walk:
    """A text checked token by token around an anchor hit.

    The hit starts where token `first` starts; `kinds` are the text's match
    kinds (see `variants`).
    """

    tokens: tuple[bytes, ...]
    first: int
    kinds: int

    def span(self, view: bytes, start: int) -> tuple[int, int] | None:
        """Return the span of this text in `view` if token `first` starts at `start`."""
        position = start
        for index in range(self.first, len(self.tokens)):
            if index > self.first:
                after = skip_whitespace(view, position)
                if after == position:
                    return None
                position = after
            token = self.tokens[index]
            if not view.startswith(token, position):
                return None
            position += len(token)
        end = position

        position = start
        for index in range(self.first - 1, -1, -1):
            before = position
            while before > 0 and view[before - 1] in _WHITESPACE_BYTES:
                before -= 1
            if before == position:
                return None
            token = self.tokens[index]
            if not view.endswith(token, 0, before):
                return None
            position = before - len(token)
        return position, end



class _Anchors:
    """The anchors of one database and the texts each anchor hit is checked against.

    An anchor of one exact text stores that text and its kinds, an anchor of
    several stores a dict from text to kinds, and an anchor of none stores
    None. Walks are kept apart because few anchors have any.
    """

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.exact: list[bytes | dict[bytes, int] | None] = []
        self.kinds: list[int] = []
        self.walks: dict[int, list[Walk]] = {}

    def add_exact(self, anchor: bytes, text: bytes, kinds: int) -> None:
        index = self._index(anchor)
        entry = self.exact[index]
        if entry is None:
            self.exact[index] = text
            self.kinds[index] = kinds
        elif isinstance(entry, bytes):
            self.exact[index] = {entry: self.kinds[index], text: kinds}
        else:
            entry[text] = kinds

    def add_walk(self, anchor: bytes, walk: Walk) -> None:
        self.walks.setdefault(self._index(anchor), []).append(walk)

    def add_decoy(self, anchor: bytes) -> None:
        """Add an anchor with no text, which only changes how Hyperscan compiles the set."""
        self._index(anchor)

    def _index(self, anchor: bytes) -> int:
        index = self.ids.get(anchor)
        if index is None:
            index = self.ids[anchor] = len(self.exact)
            self.exact.append(None)
            self.kinds.append(0)
        return index

    def exact_kinds(self, index: int, found: bytes) -> int:
        """Return the kinds of the exact text `found` at anchor `index`, or 0."""
        entry = self.exact[index]
        if entry is None:
            return 0
        if isinstance(entry, bytes):
            return self.kinds[index] if entry == found else 0
        return entry.get(found, 0)


class PatternTable:
    """The Hyperscan databases of anchors and what each anchor hit must be checked against."""

    def __init__(self, texts: dict[bytes, int]) -> None:
        literals = _Anchors()
        regexes = _Anchors()
        for text, kinds in texts.items():
            tokens = split_tokens(text)
            if len(tokens) == 1 and len(text) <= ANCHOR_MAX:
                if is_literal(text):
                    literals.add_exact(text, text, kinds)
                else:
                    regexes.add_exact(literal_regex(text), text, kinds)
                continue
            first, count = _anchor_tokens(tokens)
            walk = Walk(tokens, first, kinds)
            if count == 1 and is_literal(tokens[first][:ANCHOR_MAX]):
                literals.add_walk(tokens[first][:ANCHOR_MAX], walk)
            else:
                anchor_tokens = tokens[first : first + count] if count > 1 else (tokens[first][:ANCHOR_MAX],)
                regex = _WHITESPACE_CLASS.join(literal_regex(token) for token in anchor_tokens)
                regexes.add_walk(regex, walk)

        self.size = len(literals.ids) + len(regexes.ids)
        self._longest_literal = max(map(len, literals.ids), default=0)
        if _PAD_MIN <= len(literals.ids) < _PAD_TO:
            for decoy in decoys(len(literals.ids)):
                literals.add_decoy(decoy)
        self._literals = literals
        self._regexes = regexes
        # Anchor lengths, because a literal database reports only where a match ends.
        self._lengths = [len(anchor) for anchor in literals.ids]
        self._literal_databases = _compile_chunks(list(literals.ids))
        self._regex_database = (
            Database(list(regexes.ids), hyperscan.HS_FLAG_SOM_LEFTMOST, literal=False) if regexes.ids else None
        )
        # The id lists are only needed to compile.
        literals.ids = {}
        regexes.ids = {}

    @property
    def longest_literal(self) -> int:
        """Length of the longest anchor in the literal databases."""
        return self._longest_literal

    @property
    def has_regexes(self) -> bool:
        """Whether some anchors are in the regex database, which is always scanned whole."""
        return self._regex_database is not None

    def hits(self, text: bytes, start: int = 0) -> tuple[list[Hit], int]:
        """Return every (start, end, kinds) occurrence of a text in `text`, and where the first anchor starts.

        A text may be reported
        more than once at the same span. Inside a long stretch that repeats
        one text masked anywhere, the occurrences are reported as one hit
        from the first to the last of them.

        The literal databases are scanned from `start` on. The second
        value is the start of the first literal anchor found, whether or
        not a text matched there, or the length of `text` if none was:
        no literal anchor ends before it.
        """
        found: list[Hit] = []
        first_anchor = len(text)
        for first, database in self._literal_databases:
            first_anchor = min(
                first_anchor, self._scan_literals(database, first, text, start, found)
            )
        if self._regex_database is not None:
            regexes = self._regexes

            def on_regex(index: int, start: int, end: int, flags: int, context: object) -> None:
                kinds = regexes.exact_kinds(index, text[start:end])
                if kinds:
                    found.append((start, end, kinds))
                for walk in regexes.walks.get(index, ()):
                    span = walk.span(text, start)
                    if span is not None:
                        found.append((span[0], span[1], walk.kinds))

            self._regex_database.scan(text, on_regex)
        return found, first_anchor

    def _scan_literals(
        self, database: Database, first: int, text: bytes, offset: int, found: list[Hit]
    ) -> int:
        """Scan from `offset` with one literal database, whose pattern ids count from anchor `first`.

        Returns the start of the first anchor found, or the length of `text`.
        """
        literals = self._literals
        lengths = self._lengths
        text_view = memoryview(text)
        first_anchor = len(text)
        while True:
            reported = len(found)
            # The current chain of overlapping hits of texts masked anywhere.
            chain_end = -1
            chain_hits = 0
            next_attempt = _DENSE_HITS
            skip: tuple[int, int] | None = None

            def on_literal(index: int, _start: int, end: int, flags: int, context: object) -> bool:
                nonlocal chain_end, chain_hits, next_attempt, skip, first_anchor
                index += first
                end += offset
                start = end - lengths[index]
                first_anchor = min(first_anchor, start)
                kinds = self._verify(index, text, start, end, found)
                if kinds != ANYWHERE or index in literals.walks:
                    return False
                if start > chain_end:
                    chain_end, chain_hits, next_attempt = end, 0, _DENSE_HITS
                chain_end = max(chain_end, end)
                chain_hits += 1
                if chain_hits < next_attempt:
                    return False
                next_attempt *= 2
                skip = self._periodic_skip(database, first, text, start, end, offset)
                return skip is not None

            if database.scan(text_view[offset:], on_literal):
                return first_anchor
            assert skip is not None
            covered_start, covered_end = skip
            # Hyperscan does not report matches in order, so what this pass
            # reported is dropped. A hit that ends before the stretch's
            # start + longest - 1 is found again without skipping. One that
            # starts after its end - longest is found by the next pass. Any
            # other hit lies inside the stretch, where every text is masked
            # anywhere (`_periodic_skip`), and changes no span.
            del found[reported:]
            stop = covered_start + self._longest_literal - 1

            def on_again(index: int, _start: int, end: int, flags: int, context: object) -> None:
                index += first
                end += offset
                self._verify(index, text, end - lengths[index], end, found)

            if stop > offset:
                database.scan(text_view[offset:stop], on_again)
            found.append((covered_start, covered_end, ANYWHERE))
            offset = covered_end - self._longest_literal + 1

    def _verify(self, index: int, text: bytes, start: int, end: int, found: list[Hit]) -> int:
        """Add what the hit [start, end) of literal anchor `index` matches to `found`, and return its exact kinds."""
        literals = self._literals
        kinds = literals.exact_kinds(index, text[start:end])
        if kinds:
            found.append((start, end, kinds))
        for walk in literals.walks.get(index, ()):
            span = walk.span(text, start)
            if span is not None:
                found.append((span[0], span[1], walk.kinds))
        return kinds

    def _periodic_skip(
        self, database: Database, first: int, text: bytes, start: int, end: int, offset: int
    ) -> tuple[int, int] | None:
        """Return the (start, end) of a stretch a scan from `offset` may skip, or None.

        [start, end) is a hit of a text masked anywhere. If the bytes around
        repeat with the text's period, the text occurs at every period of
        the stretch returned. It may be skipped when every text of
        `database` that occurs inside it is masked anywhere, and when that
        saves at least `_MIN_SKIP` bytes of scanning.
        """
        length = end - start
        period = smallest_period(text[start:end])
        low, high = periodic_extent(text, start, end, period)
        covered_start = start - (start - low) // period * period
        covered_end = start + (high - end) // period * period + length
        longest = self._longest_literal
        restart = covered_end - longest + 1
        if restart - (covered_start + longest - 1) < _MIN_SKIP or restart - offset < _MIN_SKIP:
            return None
        # Every text that occurs in the stretch occurs in its first
        # period + longest - 1 bytes, so scanning those shows them all.
        sample_end = low + period + longest - 1
        if sample_end > high:
            return None
        literals = self._literals
        lengths = self._lengths
        harmless = True

        def on_sample(index: int, _start: int, sample_stop: int, flags: int, context: object) -> bool:
            nonlocal harmless
            index += first
            stop = low + sample_stop
            kinds = literals.exact_kinds(index, text[stop - lengths[index] : stop])
            if index in literals.walks or kinds not in (0, ANYWHERE):
                harmless = False
                return True
            return False

        try:
            database.scan_nested(memoryview(text)[low:sample_end], on_sample)
        except hyperscan.ScanTerminated:
            pass
        return (covered_start, covered_end) if harmless else None


def decoys(anchor_count: int) -> list[bytes]:
    """Return the decoy anchors that pad a literal set of `anchor_count` anchors (see `_PAD_TO`)."""
    generator = random.Random(anchor_count)
    return [bytes(generator.randrange(0xF8, 0x100) for _ in range(_DECOY_BYTES)) for _ in range(_PAD_TO - anchor_count)]


def _compile_chunks(literals: list[bytes]) -> list[tuple[int, Database]]:
    """Compile `literals` into one or more databases: (index of the first literal, database).

    Hyperscan 5.4 needs about 20 s and 1.1 GiB to compile 400 000 literals
    at once, but 16 s and 270 MiB in 8 chunks. It releases the GIL while it
    compiles, so two chunks compiled at a time take 8 s (measured on a
    2-core AMD EPYC). Each chunk costs a scan of its own, about 9 ms per
    16 MiB, so sets under `_CHUNK_MIN` stay whole and at most
    `_PARALLEL_MAX` chunks are made only to use more CPUs.
    """
    if not literals:
        return []
    count = max(
        math.ceil(len(literals) / _CHUNK_MAX),
        min(os.cpu_count() or 1, _PARALLEL_MAX, len(literals) // _CHUNK_MIN or 1),
    )
    size = math.ceil(len(literals) / count)
    firsts = range(0, len(literals), size)
    if len(firsts) == 1:
        return [(0, Database(literals, 0, literal=True))]
    with ThreadPoolExecutor(max_workers=min(len(firsts), os.cpu_count() or 1)) as executor:
        databases = executor.map(lambda first: Database(literals[first : first + size], 0, literal=True), firsts)
        return list(zip(firsts, databases))


def _anchor_tokens(tokens: tuple[bytes, ...]) -> tuple[int, int]:
    """Choose the tokens a multi-token text is anchored on: (first index, count)."""
    longest = max(range(len(tokens)), key=lambda index: len(tokens[index]))
    if len(tokens[longest]) >= _ANCHOR_MIN:
        return longest, 1
    best: tuple[int, int, int] | None = None  # (count, -length, first)
    for first in range(len(tokens)):
        length = 0
        for count in range(1, len(tokens) - first + 1):
            length += len(tokens[first + count - 1])
            if length >= _ANCHOR_MIN:
                candidate = (count, -length, first)
                if best is None or candidate < best:
                    best = candidate
                break
    if best is None:
        return 0, len(tokens)
    return best[2], best[0]
