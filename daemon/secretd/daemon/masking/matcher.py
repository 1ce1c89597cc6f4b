"""The masker of one scope: every text of every value, compiled once."""

from __future__ import annotations

from collections.abc import Iterable

from .boundaries import (
    BASE64_STD_ALPHABET,
    BASE64_URL_ALPHABET,
    base64_run_end,
    base64_run_start,
    word_boundary_after,
    word_boundary_before,
)
from .escapes import View
from .patterns import FOLD, PatternTable
from .policy import MAX_VALUE_BYTES, MaskPolicy
from .prefixes import TailIndex
from .variants import ANYWHERE, BASE64_STD, BASE64_URL, WORD, encode_text, expand_value

__all__ = ["Found", "Masker", "merge_spans"]

Span = tuple[int, int]


class Found:
    """The matches in a view and what a stream must hold back.

    `spans` are final matches. `tentative` are matches whose extent or
    validity depends on bytes not seen yet. `hold` is the first view position
    that more bytes could still bring into a match, or None.
    """

    __slots__ = ("hold", "spans", "tentative")

    def __init__(self, spans: list[Span], tentative: list[Span], hold: int | None) -> None:
        self.spans = spans
        self.tentative = tentative
        self.hold = hold


class Masker:
    """Replaces every occurrence of a set of secret values in output bytes.

    Build one with `Masker.build`. A masker is immutable and may be shared
    by any number of streams and threads.
    """

    __slots__ = ("_has_base64", "_table", "_tail", "_value_count", "policy")

    def __init__(self, policy: MaskPolicy, texts: dict[bytes, int], value_count: int) -> None:
        self.policy = policy
        self._value_count = value_count
        self._table = PatternTable(texts)
        self._tail = TailIndex(texts)
        self._has_base64 = any(kinds & (BASE64_STD | BASE64_URL) for kinds in texts.values())

    @classmethod
    def build(cls, values: Iterable[str], policy: MaskPolicy | None = None) -> Masker:
        """Compile a masker for `values`: every value a scope's secrets have ever had.

        Duplicates are allowed. Values under 4 characters (after trimming
        whitespace) are ignored. Raises TypeError for a value that is not a
        str. Raises ValueError for a value with a lone surrogate outside
        U+DC80 to U+DCFF (those stand for undecodable bytes), or whose UTF-8
        form is longer than `MAX_VALUE_BYTES`, or whose longest variant is
        more than half of `policy.max_held`. No message contains a value.
        """
        policy = policy if policy is not None else MaskPolicy()
        texts: dict[bytes, int] = {}
        unique: set[str] = set()
        for value in values:
            if not isinstance(value, str):
                raise TypeError(f"secret values must be str, got {type(value).__name__}")
            if value in unique:
                continue
            _check_value(value)
            unique.add(value)
            for text, kinds in expand_value(value, policy.variants).items():
                encoded = encode_text(text)
                texts[encoded] = texts.get(encoded, 0) | kinds

        longest = max(map(len, texts), default=0)
        if longest > policy.max_held // 2:
            raise ValueError(
                f"a secret value has a {longest}-byte variant, more than half of max_held "
                f"({policy.max_held} bytes). Raise MaskPolicy.max_held or shorten the value."
            )
        return cls(policy, texts, len(unique))

    @property
    def pattern_count(self) -> int:
        """Number of patterns compiled into the Hyperscan database."""
        return self._table.size

    def __repr__(self) -> str:
        return f"<Masker values={self._value_count} patterns={self.pattern_count}>"

    def mask(self, data: bytes) -> bytes:
        """Return `data` with every match replaced by the placeholder.

        Overlapping or touching matches share one placeholder.
        """
        data = bytes(data)
        if self._table.size == 0:
            return data
        view = View(data, final=True)
        spans = merge_spans(self.find(view.data, final=True, left_context=b"").spans)
        if not spans:
            return data
        pieces = []
        position = 0
        for start, end in spans:
            pieces.append(data[position : view.original(start)])
            pieces.append(self.policy.placeholder)
            position = view.original_end(end)
        pieces.append(data[position:])
        return b"".join(pieces)

    def find(self, view: bytes, final: bool, left_context: bytes) -> Found:
        """Find every match in `view` (output with escape sequences removed).

        `left_context` contains the view bytes (up to 4) just before `view`,
        for the word check. Unless `final`, `view` may continue, and the
        result gives the position from which it must be held back.
        """
        folded = view.translate(FOLD)
        spans: list[Span] = []
        tentative: list[Span] = []
        for start, end, kinds in self._table.hits(view, folded):
            if kinds & ANYWHERE:
                spans.append((start, end))
            elif kinds & WORD and word_boundary_before(view, start, left_context):
                after = word_boundary_after(view, end, final)
                if after is None:
                    tentative.append((start, end))
                elif after:
                    spans.append((start, end))
            if kinds & BASE64_STD:
                self._add_base64_run(view, start, end, BASE64_STD_ALPHABET, final, spans, tentative)
            if kinds & BASE64_URL:
                self._add_base64_run(view, start, end, BASE64_URL_ALPHABET, final, spans, tentative)
        if final:
            return Found(spans, tentative, None)

        claims = [start for start, _ in tentative]
        partial = self._tail.partial_start(folded, lambda position: word_boundary_before(view, position, left_context))
        if partial is not None:
            claims.append(partial)
        if self._has_base64:
            # A base64 match that arrives later extends back over this run.
            run = min(
                base64_run_start(view, len(view), BASE64_STD_ALPHABET),
                base64_run_start(view, len(view), BASE64_URL_ALPHABET),
            )
            if run < len(view):
                claims.append(run)
        return Found(spans, tentative, min(claims, default=None))

    @staticmethod
    def _add_base64_run(
        view: bytes, start: int, end: int, alphabet: bytes, final: bool, spans: list[Span], tentative: list[Span]
    ) -> None:
        run = (base64_run_start(view, start, alphabet), base64_run_end(view, end, alphabet))
        if run[1] == len(view) and not final:
            tentative.append(run)
        else:
            spans.append(run)


def merge_spans(spans: list[Span]) -> list[Span]:
    """Sort spans and merge those that overlap or touch."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _check_value(value: str) -> None:
    try:
        size = len(encode_text(value))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"a secret value is not valid Unicode: lone surrogate at index {exc.start} that stands for no byte"
        ) from None
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"a secret value is {size} bytes long in UTF-8, over the maximum of {MAX_VALUE_BYTES} bytes")
