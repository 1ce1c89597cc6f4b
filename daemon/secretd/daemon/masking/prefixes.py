"""Detection of a buffer tail that may still begin a match.

A stream holds back the longest tail of its buffer that is a proper prefix
of some text.

Candidate starts come from the first 4 bytes (the head) of each text:

- the heads of texts of up to `SHORT_MAX` bytes without internal
  whitespace, found in the last `SHORT_MAX` bytes at most;
- the heads of longer texts and of texts with whitespace runs, found in
  the part of the buffer those texts can reach;
- the last 3 positions, where no whole head fits, are always candidates.

One Hyperscan database contains both kinds of head and is scanned once.

Each candidate is then confirmed by binary search in the sorted texts or by
walking the tokens of a whitespace-tolerant text.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from .database import Database, is_literal, literal_regex
from .patterns import skip_whitespace, split_tokens
from .policy import WHITESPACE
from .variants import WORD

__all__ = ["SHORT_MAX", "TailIndex"]

SHORT_MAX = 256
_HEAD = 4
_WHITESPACE_BYTES = WHITESPACE.encode()

_Spaced = tuple[tuple[bytes, ...], bool]  # tokens, whether the text is word-tier


class _Tier:
    """The prefix tables of the texts masked anywhere, or of those masked only as words."""

    def __init__(self) -> None:
        self.literals: list[bytes] = []
        self.short_heads: set[bytes] = set()
        self.spaced_head_prefixes: set[bytes] = set()

    def is_literal_prefix(self, tail: bytes) -> bool:
        """Tell whether `tail` is a proper prefix of one of the literal texts."""
        index = bisect_right(self.literals, tail)
        return index < len(self.literals) and self.literals[index].startswith(tail)


class TailIndex:
    """Prefix tables for every text of a masker."""

    def __init__(self, texts: dict[bytes, int]) -> None:
        self._anywhere = _Tier()
        self._word = _Tier()
        self._max_short = 0  # maximum length of a short literal text, in bytes
        self._max_long = 0  # maximum length of a long literal text, in bytes
        self._max_spaced = 0  # maximum non-whitespace bytes of a whitespace-tolerant text
        rare: dict[bytes, list[_Spaced]] = {}

        for text, kinds in texts.items():
            word = kinds == WORD
            tier = self._word if word else self._anywhere
            tokens = tuple(split_tokens(text))
            head = tokens[0][:_HEAD]
            if len(tokens) == 1:
                tier.literals.append(tokens[0])
                if len(tokens[0]) <= SHORT_MAX:
                    self._max_short = max(self._max_short, len(tokens[0]))
                    tier.short_heads.add(head)
                    continue
                self._max_long = max(self._max_long, len(tokens[0]))
                rare.setdefault(head, [])
            else:
                self._max_spaced = max(self._max_spaced, sum(map(len, tokens)))
                tier.spaced_head_prefixes.update(head[:length] for length in range(1, len(head)))
                rare.setdefault(head, []).append((tokens, word))

        for tier in (self._anywhere, self._word):
            tier.literals = sorted(set(tier.literals))
        self._short_heads = self._anywhere.short_heads | self._word.short_heads
        # Every tail under 4 bytes that some text starts with, to skip the
        # last positions cheaply.
        self._short_tails = {
            text[:length] for tier in (self._anywhere, self._word) for text in tier.literals for length in range(1, _HEAD)
        }
        self._short_tails |= self._anywhere.spaced_head_prefixes | self._word.spaced_head_prefixes
        rare_heads = sorted(rare)
        self._rare = [rare[head] for head in rare_heads]
        # A short head shorter than _HEAD bytes is a whole text, which the
        # last positions below check.
        short_heads = sorted(head for head in self._short_heads if len(head) == _HEAD)
        # One database for both kinds of head, so that a tail is scanned once:
        # the short heads first, then the rare ones.
        self._short_count = len(short_heads)
        self._head_lengths = [len(head) for head in short_heads + rare_heads]
        self._heads = _head_database(short_heads + rare_heads)

    @property
    def reach(self) -> int | None:
        """How many bytes at the end of a text `partial_start` looks at, or None for all of them."""
        return None if self._max_spaced else max(self._max_short, self._max_long)

    def partial_start(self, text: bytes, boundary_before: Callable[[int], bool]) -> int | None:
        """Return the first position of `text` whose tail is a proper prefix of a text to mask, or None.

        Only the last `reach` bytes of `text` are looked at, or all of them if
        `reach` is None. `boundary_before(position)` returns whether a
        word-tier text may start there.
        """
        end = len(text)
        candidates: dict[int, list[_Spaced]] = {}
        if self._heads is not None:
            self._add_head_candidates(text, candidates)
        for position in range(max(0, end - _HEAD + 1), end):
            if text[position:] in self._short_tails:
                candidates.setdefault(position, [])

        for position in sorted(candidates):
            if self._confirm(text[position:], candidates[position], lambda: boundary_before(position)):
                return position
        return None

    def _add_head_candidates(self, text: bytes, candidates: dict[int, list[_Spaced]]) -> None:
        """Add the positions near the end of `text` where a head starts, with the rare texts each may begin."""
        end = len(text)
        short_low = max(0, end - self._max_short + 1)
        rare_low = max(0, end - self._max_long + 1) if self._max_long else end
        if self._max_spaced:
            rare_low = min(rare_low, _spaced_reach(text, self._max_spaced))
        low = min(short_low, rare_low)
        if low > end - 1:
            return
        assert self._heads is not None
        short_count = self._short_count
        lengths = self._head_lengths
        rare = self._rare

        # Compiled without start-of-match tracking: a head starts its length before its end.
        def on_head(head: int, _start: int, stop: int, flags: int, context: object) -> None:
            position = low + stop - lengths[head]
            if head < short_count:
                if position >= short_low:
                    candidates.setdefault(position, [])
            elif position >= rare_low:
                candidates.setdefault(position, []).extend(rare[head - short_count])

        self._heads.scan(memoryview(text)[low:], on_head)

    def _confirm(self, tail: bytes, spaced: list[_Spaced], boundary: Callable[[], bool]) -> bool:
        """Tell whether `tail` is a proper prefix of a text that may start at its position."""
        if self._anywhere.is_literal_prefix(tail) or tail in self._anywhere.spaced_head_prefixes:
            return True
        word_prefix = self._word.is_literal_prefix(tail) or tail in self._word.spaced_head_prefixes
        for tokens, word in spaced:
            if word and word_prefix:
                continue
            if _is_spaced_prefix(tokens, tail):
                if not word:
                    return True
                word_prefix = True
        return word_prefix and boundary()


def _head_database(heads: list[bytes]) -> Database | None:
    """Compile `heads` without start-of-match tracking, or return None if there are none."""
    if not heads:
        return None
    # The literal compiler takes no NUL byte (see `database`), so heads
    # with one are all written as regexes.
    if all(is_literal(head) for head in heads):
        return Database(heads, 0, literal=True)
    return Database([literal_regex(head) for head in heads], 0, literal=False)


def _is_spaced_prefix(tokens: tuple[bytes, ...], tail: bytes) -> bool:
    """Tell whether `tail` is a proper prefix of a whitespace-tolerant text."""
    position = 0
    for index, token in enumerate(tokens):
        if index:
            if position == len(tail):
                return True
            after = skip_whitespace(tail, position)
            if after == position:
                return False
            position = after
            if position == len(tail):
                return True
        remaining = len(tail) - position
        if remaining < len(token):
            return token.startswith(tail[position:])
        if not tail.startswith(token, position):
            return False
        position += len(token)
    return False


def _spaced_reach(text: bytes, max_bytes: int) -> int:
    """Return a position before which no whitespace-tolerant prefix can start.

    A prefix of such a text contains at most `max_bytes` non-whitespace
    bytes. The result may come a little earlier than needed, which only adds
    candidates.
    """
    end = len(text)
    span = max_bytes + 64
    while span < end:
        if len(text[end - span :].translate(None, _WHITESPACE_BYTES)) > max_bytes:
            return end - span
        span *= 2
    return 0
