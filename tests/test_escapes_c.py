"""The C module that builds the escape-sequence view gives what the regular expression gives.

`_escapes.split` replaces `re.split` with `escapes._SEQUENCE` on the hot
path. These tests feed both the same bytes, biased towards the edges of
each kind of sequence (length limits, missing terminators, ESC at the
end), and compare every output, then compare whole `View`s built each way.
"""

from __future__ import annotations

from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretd.daemon.masking import escapes

_escapes = pytest.importorskip(
    "secretd.daemon.masking._escapes",
    reason="the C module is not compiled in this environment (see escapes.py); the regex path is tested elsewhere",
)

# Pieces that start, continue, end or break escape sequences.
_PIECES = [
    b"\x1b", b"\x1b[", b"\x1b]", b"\x1bP", b"\x1bX", b"\x1b^", b"\x1b_", b"\x1b\\", b"\x1b(", b"\x1b(B",
    b"[", b"]", b"\x07", b"\\", b"m", b"K", b";", b"0", b"31", b"?25", b" ", b"!", b"/", b"~", b"\x7f",
    b"a", b"Z", b"\n", b"\xc3\xa9", b"\x00", b"P", b"X",
]


def _long(byte: bytes, count: int) -> bytes:
    return byte * count


# Sequences at and around their length limits.
_EDGES = [
    b"\x1b[" + _long(b"0", 64) + b"m",
    b"\x1b[" + _long(b"0", 65) + b"m",
    b"\x1b[1" + _long(b" ", 16) + b"p",
    b"\x1b[1" + _long(b" ", 17) + b"p",
    b"\x1b]" + _long(b"t", 4096) + b"\x07",
    b"\x1b]" + _long(b"t", 4097) + b"\x07",
    b"\x1bP" + _long(b"d", 4096) + b"\x1b\\",
    b"\x1bP" + _long(b"d", 4097) + b"\x1b\\",
    b"\x1b" + _long(b" ", 16) + b"0",
    b"\x1b" + _long(b" ", 17) + b"0",
    b"\x1b]" + _long(b"t", 10) + b"\x1bx",
    b"\x1bP" + _long(b"d", 10) + b"\x1b",
]

_buffers = st.lists(st.sampled_from(_PIECES) | st.binary(max_size=3), max_size=60).map(b"".join)


def _python(buffer: bytes) -> tuple[bytes, list[int], list[int], list[int]]:
    data, starts, lengths = escapes.python_split(buffer)
    return data, starts, list(accumulate(lengths, initial=0))[:-1], lengths


def _compiled(buffer: bytes) -> tuple[bytes, list[int], list[int], list[int]]:
    data, starts, view_starts, lengths = _escapes.split(buffer)
    return data, *(memoryview(array).cast("q").tolist() for array in (starts, view_starts, lengths))


@settings(max_examples=3000, deadline=None)
@given(_buffers)
def test_split_matches_the_regular_expression(buffer: bytes) -> None:
    assert _compiled(buffer) == _python(buffer)


@pytest.mark.parametrize("edge", _EDGES, ids=range(len(_EDGES)))
@pytest.mark.parametrize("around", [(b"", b""), (b"ab", b"cd"), (b"\x1b", b"\x1b[0m")])
def test_split_matches_at_length_limits(edge: bytes, around: tuple[bytes, bytes]) -> None:
    buffer = around[0] + edge + around[1]
    assert _compiled(buffer) == _python(buffer)
    # Cut short anywhere, a sequence must not be taken as complete.
    for end in range(len(buffer) - 8, len(buffer)):
        assert _compiled(buffer[:end]) == _python(buffer[:end])


def test_split_takes_any_buffer() -> None:
    data = b"a\x1b[31mb\x1b[0mc"
    expected = _compiled(data)
    assert _compiled(bytearray(data)) == expected
    assert _compiled(memoryview(data)) == expected
    assert expected[0] == b"abc"
    with pytest.raises(TypeError):
        _escapes.split("a\x1b[31mb")


@settings(max_examples=500, deadline=None)
@given(_buffers, st.booleans(), st.data())
def test_views_agree(buffer: bytes, final: bool, data: st.DataObject) -> None:
    compiled = escapes.View(buffer, final)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(escapes, "_escapes", None)
        python = escapes.View(buffer, final)
    assert (compiled.data, compiled.cut, compiled.has_escapes) == (python.data, python.cut, python.has_escapes)
    if compiled.data:
        position = data.draw(st.integers(0, len(compiled.data) - 1))
        assert compiled.original(position) == python.original(position)
        assert compiled.original_claim(position) == python.original_claim(position)
    original = data.draw(st.integers(0, len(buffer)))
    assert compiled.view_position(original) == python.view_position(original)
    assert compiled.boundary_at_or_before(original) == python.boundary_at_or_before(original)
    assert compiled.boundary_at_or_after(original) == python.boundary_at_or_after(original)
    start = data.draw(st.integers(0, len(buffer)))
    assert compiled.joins(original, start) == python.joins(original, start)
