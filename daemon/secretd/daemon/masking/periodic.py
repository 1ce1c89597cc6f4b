"""Periods of byte strings, for skipping dense repeats of one text in a scan.

Output such as 4 MiB of "a" contains a match of the text "aaaaaaaa" at every
byte. Hyperscan reports each one to a Python handler, which costs about a
microsecond apiece. Inside a stretch that repeats with a period `p`, a
text of period `p` occurs at every p-th byte, so the stretch is found with
a few slice comparisons and the scan resumes near its end (see
`patterns.PatternTable`).
"""

from __future__ import annotations

__all__ = ["periodic_extent", "smallest_period"]

# First step, in bytes, of the galloping comparisons.
_FIRST_STEP = 64


def smallest_period(text: bytes) -> int:
    """Return the smallest p > 0 with text[i] == text[i + p] for every valid i."""
    border = [0] * len(text)
    length = 0
    for index in range(1, len(text)):
        while length and text[index] != text[length]:
            length = border[length - 1]
        if text[index] == text[length]:
            length += 1
        border[index] = length
    return len(text) - (border[-1] if text else 0)


def periodic_extent(data: bytes, start: int, end: int, period: int) -> tuple[int, int]:
    """Return the largest (low, high) around [start, end) in which data repeats every `period` bytes.

    `data[start:end]` must itself have that period. In the result,
    data[i] == data[i - period] for every i with low + period <= i < high.
    """
    high = end
    step = _FIRST_STEP
    while high < len(data):
        size = min(step, len(data) - high)
        if data[high : high + size] == data[high - period : high - period + size]:
            high += size
            step *= 2
            continue
        high += _matching_prefix(data, high, high - period, size)
        break

    low = start
    step = _FIRST_STEP
    while low > 0:
        size = min(step, low)
        if data[low - size : low] == data[low - size + period : low + period]:
            low -= size
            step *= 2
            continue
        low -= _matching_suffix(data, low, low + period, size)
        break
    return low, high


def _matching_prefix(data: bytes, first: int, second: int, limit: int) -> int:
    """Return how many bytes from `first` and from `second` agree, below `limit`."""
    low, high = 0, limit  # data agrees over `low` bytes and disagrees within `high`
    while high - low > 1:
        middle = (low + high) // 2
        if data[first : first + middle] == data[second : second + middle]:
            low = middle
        else:
            high = middle
    return low


def _matching_suffix(data: bytes, first_end: int, second_end: int, limit: int) -> int:
    """Return how many bytes before `first_end` and before `second_end` agree, below `limit`."""
    low, high = 0, limit
    while high - low > 1:
        middle = (low + high) // 2
        if data[first_end - middle : first_end] == data[second_end - middle : second_end]:
            low = middle
        else:
            high = middle
    return low
