"""Compiled patterns: one Hyperscan database of anchors, verified in Python.

Every text to mask is split into literal tokens at its internal whitespace
runs. A whitespace run inside a text matches any non-empty run of
whitespace in the output, but whitespace at the ends of a text is literal.

Hyperscan does not compile every text as it is. It scans a folded copy of
the view for one anchor per text, and each hit is then checked against the
exact texts in Python:

- Folding maps A-F to a-f, "-" to "+" and "_" to "/". Upper- and lower-case
  hex escapes and standard and URL-safe base64 then share one anchor. For
  10 000 random 20-character passwords with punctuation, 91 945 texts share
  64 838 anchors, and Hyperscan's compile time grows with their number.
- The anchor of a short single-token text is the whole text, so a hit is
  checked with one dictionary lookup. A longer text is anchored on its first
  `ANCHOR_MAX` bytes. A text with whitespace runs is anchored on its longest
  token, or on a few consecutive short tokens, and the other tokens are
  checked around the hit. Hyperscan 0.9.1 compiles long patterns slowly
  (0.3 s for one 3 KiB key with 50 whitespace runs) and rejects
  expressions longer than 16 000 characters.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import hyperscan

from .policy import WHITESPACE

__all__ = ["ANCHOR_MAX", "FOLD", "CompiledSet", "PatternTable", "Walk", "skip_whitespace", "split_tokens"]

ANCHOR_MAX = 256

FOLD = bytes.maketrans(b"ABCDEF-_", b"abcdef+/")

_WHITESPACE_BYTES = WHITESPACE.encode()
_WHITESPACE_RUN = re.compile(b"[" + re.escape(_WHITESPACE_BYTES) + b"]+")
_WHITESPACE_CLASS = rb"[\t\n\x0b\x0c\r ]+"
_NOT_ALPHANUMERIC = re.compile(rb"[^0-9A-Za-z]")

# A hit of an anchor shorter than this in bytes is too frequent to check
# in Python, so a short token takes its neighbours into its anchor.
_ANCHOR_MIN = 8


def split_tokens(text: bytes) -> tuple[bytes, ...]:
    """Split a text at its internal whitespace runs, keeping whitespace at its ends in the end tokens."""
    core = text.strip(_WHITESPACE_BYTES)
    if not core:
        return (text,)
    leading = text[: len(text) - len(text.lstrip(_WHITESPACE_BYTES))]
    trailing = text[len(text.rstrip(_WHITESPACE_BYTES)) :]
    tokens = _WHITESPACE_RUN.split(core)
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


@dataclass
class _Anchor:
    exact: dict[bytes, int] = field(default_factory=dict)
    walks: list[Walk] = field(default_factory=list)


class PatternTable:
    """The Hyperscan database of anchors and what each anchor hit must be checked against."""

    def __init__(self, texts: dict[bytes, int]) -> None:
        anchors: dict[bytes, _Anchor] = {}
        for text, kinds in texts.items():
            tokens = split_tokens(text)
            if len(tokens) == 1 and len(text) <= ANCHOR_MAX:
                anchors.setdefault(_literal_regex(text), _Anchor()).exact[text] = kinds
                continue
            first, count = _anchor_tokens(tokens)
            if count == 1:
                regex = _literal_regex(tokens[first][:ANCHOR_MAX])
            else:
                regex = _WHITESPACE_CLASS.join(_literal_regex(token) for token in tokens[first : first + count])
            anchors.setdefault(regex, _Anchor()).walks.append(Walk(tokens, first, kinds))

        regexes = sorted(anchors)
        self._anchors = [anchors[regex] for regex in regexes]
        self.size = len(regexes)
        self._database = CompiledSet(regexes, hyperscan.HS_FLAG_SOM_LEFTMOST) if regexes else None

    def hits(self, view: bytes, folded: bytes) -> list[tuple[int, int, int]]:
        """Return every (start, end, kinds) occurrence of a text in `view`.

        `folded` is `view` translated with `FOLD`. A text may be reported
        more than once at the same span.
        """
        if self._database is None:
            return []
        found = []
        for anchor_id, start, end in self._database.scan(folded):
            anchor = self._anchors[anchor_id]
            if anchor.exact:
                kinds = anchor.exact.get(view[start:end])
                if kinds:
                    found.append((start, end, kinds))
            for walk in anchor.walks:
                span = walk.span(view, start)
                if span is not None:
                    found.append((span[0], span[1], walk.kinds))
        return found


class CompiledSet:
    """A Hyperscan block-mode database of regexes, safe to scan from several threads."""

    def __init__(self, expressions: list[bytes], flags: int) -> None:
        self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            self._database.compile(
                expressions=expressions,
                ids=list(range(len(expressions))),
                elements=len(expressions),
                flags=flags,
            )
        except hyperscan.error:
            # Hyperscan's message may quote part of an expression, that is of
            # a secret, so it is left out and not chained.
            raise RuntimeError(f"Hyperscan failed to compile {len(expressions)} masking patterns") from None
        self._local = threading.local()

    def scan(self, data: bytes) -> list[tuple[int, int, int]]:
        """Return (expression index, start, end) for every match in `data`."""
        matches: list[tuple[int, int, int]] = []

        def on_match(index: int, start: int, end: int, flags: int, context: object) -> None:
            matches.append((index, start, end))

        self._database.scan(data, match_event_handler=on_match, scratch=self._scratch())
        return matches

    def _scratch(self) -> hyperscan.Scratch:
        # A scan releases the GIL, and a scratch space serves one scan at a time.
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = hyperscan.Scratch(self._database)
            self._local.scratch = scratch
        return scratch


def _literal_regex(literal: bytes) -> bytes:
    """Return a Hyperscan regex that matches `literal` folded."""
    return _NOT_ALPHANUMERIC.sub(_hex_escape, literal.translate(FOLD))


def _hex_escape(match: re.Match[bytes]) -> bytes:
    return b"\\x%02x" % match.group()[0]


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
