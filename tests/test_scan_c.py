"""The masker's C module gives what the regular expressions it replaces give.

`_scan.split` replaces `re.split` with `escapes._SEQUENCE` on the hot
path. These tests feed both the same bytes, biased towards the edges of
each kind of sequence (length limits, missing terminators, ESC at the
end), and compare every output, then compare whole `View`s built each way.
`_scan.full_lines` replaces `runs._FULL_LINE.finditer`, and is compared on
lines around its 48-character minimum.
"""

from __future__ import annotations

import array
import base64
import bisect
import random
import string
from itertools import accumulate
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretd.daemon.masking import Masker, escapes, runs

_scan = pytest.importorskip(
    "secretd.daemon.masking._scan",
    reason="the C module is not compiled in this environment (see escapes.py); the regex path is tested elsewhere",
)

# Pieces that start, continue, end or break escape sequences.
_PIECES = [
    b"\x1b", b"\x1b[", b"\x1b]", b"\x1bP", b"\x1bX", b"\x1b^", b"\x1b_", b"\x1b\\", b"\x1b(", b"\x1b(B",
    b"[", b"]", b"\x07", b"\\", b"m", b"K", b";", b"0", b"31", b"?25", b" ", b"!", b"/", b"~", b"\x7f",
    b"a", b"Z", b"\n", b"\xc3\xa9", b"\x00", b"P", b"X",
]


# Sequences at and around their length limits.
_EDGES = [
    b"\x1b[" + b"0" * 64 + b"m",
    b"\x1b[" + b"0" * 65 + b"m",
    b"\x1b[1" + b" " * 16 + b"p",
    b"\x1b[1" + b" " * 17 + b"p",
    b"\x1b]" + b"t" * 4096 + b"\x07",
    b"\x1b]" + b"t" * 4097 + b"\x07",
    b"\x1bP" + b"d" * 4096 + b"\x1b\\",
    b"\x1bP" + b"d" * 4097 + b"\x1b\\",
    b"\x1b" + b" " * 16 + b"0",
    b"\x1b" + b" " * 17 + b"0",
    b"\x1b]" + b"t" * 10 + b"\x1bx",
    b"\x1bP" + b"d" * 10 + b"\x1b",
]

_buffers = st.lists(st.sampled_from(_PIECES) | st.binary(max_size=3), max_size=60).map(b"".join)


def _python(buffer: bytes) -> tuple[bytes, list[int], list[int], list[int]]:
    data, starts, lengths = escapes.python_split(buffer)
    return data, starts, list(accumulate(lengths, initial=0))[:-1], lengths


def _compiled(buffer: bytes) -> tuple[bytes, list[int], list[int], list[int]]:
    data, starts, view_starts, lengths = _scan.split(buffer)
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
        _scan.split("a\x1b[31mb")


@settings(max_examples=500, deadline=None)
@given(_buffers, st.booleans(), st.data())
def test_views_agree(buffer: bytes, final: bool, data: st.DataObject) -> None:
    compiled = escapes.View(buffer, final)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(escapes, "_scan", None)
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


_LINE_PIECES = [b"\n", b"\r\n", b"\r", b"A" * 47, b"b" * 48, b"-_+/" * 13, b"9", b"=", b" ", b"\x1b[0m", b"."]
_texts = st.lists(st.sampled_from(_LINE_PIECES), max_size=12).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(_texts, st.integers(0, 400))
def test_full_lines_match_the_regular_expression(text: bytes, start: int) -> None:
    expected = [(match.start() + 1, *match.span(1)) for match in runs._FULL_LINE.finditer(text, start)]
    assert _scan.full_lines(text, start) == expected


def test_full_lines_finds_wrapped_base64() -> None:
    line = b"QUJD" * 16
    text = b"key:\n" + line + b"\n" + line + b"\r\n" + line[:10] + b"\n"
    first = 5
    second = first + len(line) + 1
    assert _scan.full_lines(text, 0) == [
        (first, first + len(line), first + len(line) + 1),
        (second, second + len(line), second + len(line) + 2),
    ]
    assert _scan.full_lines(text, second) == []  # the newline before a line belongs to it
    assert _scan.full_lines(text, second - 1) == [(second, second + len(line), second + len(line) + 2)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted((Path(__file__).parent / "data" / "clean").glob("*.txt"))), min_size=1, max_size=3),
       st.integers(0, 2**32))
def test_masker_output_same_without_module(paths: list[Path], seed: int) -> None:
    rng = random.Random(seed)
    output = b"".join(path.read_bytes()[:20000] for path in paths)
    values = []
    # Plant values coloured, wrapped in base64 lines and as they are, at random places.
    for _ in range(4):
        value = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(8, 60)))
        values.append(value)
        at = rng.randrange(len(output) + 1)
        cut = rng.randrange(1, len(value))
        form = rng.choice([
            value.encode(),
            value[:cut].encode() + b"\x1b[1;31m" + value[cut:].encode() + b"\x1b[0m",
            b"\n" + b"\n".join(base64.b64encode(value.encode() * 3)[i : i + 48] for i in range(0, len(value) * 4, 48)),
        ])
        output = output[:at] + form + output[at:]
    masker = Masker.build(values)
    with_module = masker.mask(output)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(escapes, "_scan", None)
        patch.setattr(runs, "_scan", None)
        assert masker.mask(output) == with_module


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40)), st.integers(-(2**40) - 1, 2**40 + 1))
def test_bisect_right_matches_bisect(items: list[int], value: int) -> None:
    items.sort()
    positions = memoryview(array.array("q", items)).cast("B").cast("q")
    assert _scan.bisect_right(positions, value) == bisect.bisect_right(items, value)


def test_bisect_right_rejects_partial_integers() -> None:
    with pytest.raises(ValueError, match="a multiple of 8 bytes"):
        _scan.bisect_right(b"\x00" * 7, 0)
