"""The masker of one scope: every text of every value, compiled once."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import count
from typing import NamedTuple, cast

from .escapes import View
from .finder import Finder, Found, Span, TextState
from .policy import MAX_VALUE_BYTES, MaskPolicy
from .variants import encode_text, expand_value

__all__ = ["Masker", "SkippedValue", "merge_spans"]

_serials = count()

# From this size on, `Masker.mask` scans the original bytes on a second
# thread while this one builds and scans the view. Both scans run in C
# with the GIL released. On a 2-core AMD EPYC this saved 23% of the time
# for 1 MiB of coloured output with 1 000 secrets, and 20% for 4 MiB.
# Below about 300 KiB, waking the thread and passing the GIL back and
# forth cost more than it saved.
PARALLEL_MIN = 512 * 1024

_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _forget_helper() -> None:
    """Drop the parent's helper in a forked child, which has the executor but not its thread."""
    global _helper, _helper_lock
    _helper = None
    _helper_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)


def _second_thread() -> ThreadPoolExecutor | None:
    """Return the process's helper thread for large masks, or None on a single CPU."""
    global _helper
    if _helper is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if available < 2:
            return None
        with _helper_lock:
            if _helper is None:
                _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="secretd-mask")
    return _helper


class SkippedValue(NamedTuple):
    """A value that `Masker.build` left out: its index among the values and why, never the value."""

    # The field shadows `tuple.index`, which a NamedTuple allows.
    index: int  # type: ignore[assignment]
    reason: str


class Masker:
    """Replaces every occurrence of a set of secret values in output bytes.

    Build one with `Masker.build`. A masker is immutable and may be shared
    by any number of streams and threads. `skipped` lists the values that
    cannot be masked and were left out. `serial` is a number that no other
    masker of the process has.
    """

    __slots__ = ("_finder", "_value_count", "policy", "serial", "skipped")

    def __init__(
        self, policy: MaskPolicy, texts: dict[bytes, int], value_count: int, skipped: tuple[SkippedValue, ...]
    ) -> None:
        self.policy = policy
        self.skipped = skipped
        self.serial = next(_serials)  # a stream compares it with that of its last feed
        self._value_count = value_count
        self._finder = Finder(texts)

    @classmethod
    def build(cls, values: Iterable[str], policy: MaskPolicy | None = None) -> Masker:
        """Compile a masker for `values`: every value a scope's secrets have ever had.

        Duplicates are allowed. Values under 4 characters (after trimming
        whitespace) are ignored. A value with a lone surrogate outside
        U+DC80 to U+DCFF (those stand for undecodable bytes) has no UTF-8
        form, so it is skipped and listed in the masker's `skipped`, and
        the other values are masked as usual.

        Raises TypeError for a value that is not a str. Raises ValueError
        for a value whose UTF-8 form is longer than `MAX_VALUE_BYTES`, or
        whose longest variant is more than half of `policy.max_held`. No
        message contains a value.
        """
        policy = policy if policy is not None else MaskPolicy()
        texts: dict[bytes, int] = {}
        unique: set[str] = set()
        skipped: list[SkippedValue] = []
        # Typed as object, so that the check below raises its own message also
        # when the module is compiled with mypyc (hatch_build.py).
        for index, value in enumerate(cast("Iterable[object]", values)):
            if not isinstance(value, str):
                raise TypeError(f"secret values must be str, got {type(value).__name__}")
            if value in unique:
                continue
            reason = _unencodable_reason(value)
            if reason is not None:
                skipped.append(SkippedValue(index, reason))
                continue
            _check_size(value)
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
        return cls(policy, texts, len(unique), tuple(skipped))

    @property
    def pattern_count(self) -> int:
        """Number of anchor patterns compiled into the Hyperscan databases."""
        return self._finder.table.size

    def __repr__(self) -> str:
        return f"<Masker values={self._value_count} patterns={self.pattern_count} skipped={len(self.skipped)}>"

    def mask(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return `data` with every match replaced by the placeholder.

        Matches are found in the view (escape sequences left out) and in the
        original bytes. Overlapping or touching matches, and matches with
        only whole escape sequences between them, share one placeholder.
        """
        data = bytes(data)
        if self.pattern_count == 0:
            return data
        raw_spans: Future[list[Span]] | None = None
        if len(data) >= PARALLEL_MIN and b"\x1b" in data:
            helper = _second_thread()
            if helper is not None:
                try:
                    raw_spans = helper.submit(self._raw_spans, data)
                except RuntimeError:  # the interpreter is shutting down
                    pass
        view = View(data, final=True)
        spans = [view.original_span(start, end) for start, end in self.find(view.data, True, TextState()).spans]
        if raw_spans is not None:
            spans += raw_spans.result()
        elif view.has_escapes:
            spans += self._raw_spans(data)
        # Slices of a memoryview, so that the output is the only copy.
        original = memoryview(data)
        pieces: list[bytes | memoryview] = []
        position = 0
        for start, end in merge_spans(spans, view):
            pieces.append(original[position:start])
            pieces.append(self.policy.placeholder)
            position = end
        pieces.append(original[position:])
        return b"".join(pieces)

    def _raw_spans(self, data: bytes) -> list[Span]:
        """Return the matches in the original bytes of output that has escape sequences."""
        # A base64 text across a line break of the raw output lies in lines
        # without escape sequences, so the view has it too.
        return self.find(data, True, TextState(), wrapped=False).spans

    @property
    def tail_reach(self) -> int | None:
        """How many bytes at the end of a text (and 4 before them) decide `Found.partial`, or None for all."""
        return self._finder.tail_reach

    def find(
        self,
        text: bytes,
        final: bool,
        state: TextState,
        partial: tuple[int | None] | None = None,
        wrapped: bool = True,
    ) -> Found:
        """Find every match in `text`, the view or the original bytes of some output.

        `state` describes the text before it in a stream. Unless `final`,
        `text` may go on, and the result also gives what must be held back.
        `partial` and `wrapped` are described at `Finder.find`.
        """
        return self._finder.find(text, final, state, partial, wrapped)


def merge_spans(spans: list[Span], view: View) -> list[Span]:
    """Sort original spans and merge those that `view.joins`."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and view.joins(merged[-1][1], start):
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _unencodable_reason(value: str) -> str | None:
    """Return why `value` has no UTF-8 form, or None if it has one."""
    try:
        encode_text(value)
    except UnicodeEncodeError as exc:
        return f"not valid Unicode: lone surrogate at index {exc.start} that stands for no byte"
    return None


def _check_size(value: str) -> None:
    size = len(encode_text(value))
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"a secret value is {size} bytes long in UTF-8, over the maximum of {MAX_VALUE_BYTES} bytes")
