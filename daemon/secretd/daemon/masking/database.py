"""Hyperscan block-mode databases: pure literals or regexes, scanned from any thread.

Literals are compiled with Hyperscan's literal compiler (`hs_compile_lit_multi`,
Hyperscan 5.2 and later), which builds a set of plain strings much faster
and in less memory than the regex compiler builds the same set written as
regexes.

The python-hyperscan 0.9.1 binding passes `strlen` of each literal to
that compiler, so a literal is cut at its first NUL byte. `is_literal`
therefore rejects literals that contain NUL, and callers compile those as
regexes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

import hyperscan

__all__ = ["Database", "MatchHandler", "is_literal", "literal_regex"]

# Called with (pattern id, start, end, flags, context). Hyperscan reports
# start 0 unless the database tracks the start of match. A true return
# value stops the scan.
MatchHandler = Callable[[int, int, int, int, object], bool | None]

_NOT_ALPHANUMERIC = re.compile(rb"[^0-9A-Za-z]")


def is_literal(pattern: bytes) -> bool:
    """Tell whether `pattern` can be compiled by the literal compiler of the 0.9.1 binding."""
    return b"\x00" not in pattern


def literal_regex(literal: bytes) -> bytes:
    """Return a Hyperscan regex that matches exactly `literal`."""
    return _NOT_ALPHANUMERIC.sub(lambda match: b"\\x%02x" % match.group()[0], literal)


class Database:
    """One compiled block-mode database and a scratch space per thread.

    `literal=True` compiles `patterns` as plain byte strings, otherwise as
    regexes. Each pattern's id is its index in `patterns`.
    """

    def __init__(self, patterns: Sequence[bytes], flags: int, literal: bool) -> None:
        self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            self._database.compile(
                expressions=list(patterns),
                ids=list(range(len(patterns))),
                elements=len(patterns),
                flags=flags,
                literal=literal,
            )
        except hyperscan.error:
            # Hyperscan's message may quote part of a pattern, that is of a
            # secret, so it is left out and not chained.
            raise RuntimeError(f"Hyperscan failed to compile {len(patterns)} masking patterns") from None
        self._local = threading.local()

    def scan(self, data: bytes | memoryview, on_match: MatchHandler) -> bool:
        """Call `on_match` for every match in `data`; return False if it stopped the scan."""
        try:
            # Hyperscan scans any buffer, although its stub declares str or bytes only.
            self._database.scan(data, match_event_handler=on_match, scratch=self._scratch(0))  # type: ignore[type-var]
        except hyperscan.ScanTerminated:
            return False
        return True

    def scan_nested(self, data: bytes | memoryview, on_match: MatchHandler) -> None:
        """Scan `data` from inside the handler of a running `scan` of the same thread."""
        self._database.scan(data, match_event_handler=on_match, scratch=self._scratch(1))  # type: ignore[type-var]

    def _scratch(self, depth: int) -> hyperscan.Scratch:
        # A scan releases the GIL, and a scratch space serves one scan at a
        # time, so each thread has its own, and a nested scan a second one.
        scratches = getattr(self._local, "scratches", None)
        if scratches is None:
            scratches = self._local.scratches = [None, None]
        if scratches[depth] is None:
            scratches[depth] = hyperscan.Scratch(self._database)
        return scratches[depth]
