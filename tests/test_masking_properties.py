"""Property tests: the masker agrees with the plain reference, and chunking never matters.

Texts are built by embedding the values' own variants (from the reference)
in random noise. Some are mangled: an escape sequence inserted, whitespace
changed, cut short, surrounded by base64 characters, put inside the text of
a string sequence (a title, a hyperlink), or put right after an ESC that
may swallow its start. Values are also embedded in line-wrapped base64.
"""

from __future__ import annotations

import base64
import random
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretd.daemon.masking import Masker, MaskPolicy, MaskStream, patterns

from .reference_masker import reference_mask, texts_for

# \udcff stands for an undecodable byte, as os.environ keeps it.
VALUE_ALPHABET = "abcXYZ019-_+/=%'\"\\ \t\n\r!@<>&äé€😀\x01\x1b[m\udcff"
NOISE_ALPHABET = "abcghiXYZ019-_+/=%'\" \t\n!é€😀"
ESCAPES = [
    "\x1b[31m",
    "\x1b[0m",
    "\x1b[1;32m",
    "\x1b]0;title\x07",
    "\x1b]8;;https://example.com\x1b\\",
    "\x1b(B",
    "\x1b",
    "\x1b[",
    "\x1bP1$r\x1b\\",
]

# String sequences around a text: OSC titles and hyperlinks, DCS, APC, PM and SOS.
STRING_SEQUENCES = [
    ("\x1b]0;", "\x07"),
    ("\x1b]2;x ", "\x1b\\"),
    ("\x1b]8;;https://x/dl?token=", "\x1b\\"),
    ("\x1bP", "\x1b\\"),
    ("\x1b_", "\x1b\\"),
    ("\x1b^", "\x1b\\"),
    ("\x1bX", "\x1b\\"),
]
# Escapes that take the first bytes of what follows: CSI parameters and a final byte, or one final byte.
SWALLOWING = ["\x1b", "\x1b[", "\x1b[1", "\x1b(", "\x1b#"]

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

values_strategy = st.lists(
    st.one_of(
        st.text(alphabet=VALUE_ALPHABET, min_size=8, max_size=24),
        st.text(alphabet=VALUE_ALPHABET, min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def mangled(draw: st.DrawFn, text: str) -> str:
    change = draw(
        st.sampled_from(
            ["as is", "escape inside", "whitespace", "cut short", "base64 around", "in a sequence", "escape before"]
        )
    )
    if change == "in a sequence":
        opening, closing = draw(st.sampled_from(STRING_SEQUENCES))
        return opening + text + draw(st.sampled_from([closing, ""]))
    if change == "escape before":
        return draw(st.sampled_from(SWALLOWING)) + text
    if change == "escape inside" and len(text) > 1:
        at = draw(st.integers(1, len(text) - 1))
        return text[:at] + draw(st.sampled_from(ESCAPES)) + text[at:]
    if change == "whitespace":
        return text.replace(" ", draw(st.sampled_from(["  ", "\r\n", "\t", " \n\t "])))
    if change == "cut short" and len(text) > 1:
        return text[: draw(st.integers(1, len(text) - 1))]
    if change == "base64 around":
        around = st.text(alphabet="ABCxyz09+/-_", max_size=4)
        return draw(around) + text + draw(around) + draw(st.sampled_from(["", "=", "=="]))
    return text


@st.composite
def wrapped_base64(draw: st.DrawFn, values: list[str]) -> str:
    """A value in base64 wrapped into lines, as `base64` (76 columns) or `openssl base64` (64) write it."""
    value = draw(st.sampled_from(values)).encode("utf-8", "surrogateescape")
    before = draw(st.binary(max_size=90))
    after = draw(st.binary(max_size=90))
    encode = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
    blob = encode(before + value + after).decode()
    width = draw(st.sampled_from([47, 48, 49, 64, 70, 76]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [blob[start : start + width] for start in range(0, len(blob), width)]
    # Colour codes at the start, inside or at the end of some lines, as a
    # pager or `grep --color` would leave them.
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, len(lines) - 1))
        at = draw(st.integers(0, len(lines[index])))
        lines[index] = lines[index][:at] + draw(st.sampled_from(ESCAPES)) + lines[index][at:]
    return newline.join(lines) + draw(st.sampled_from([newline, "", "\x1b[0m" + newline]))


@st.composite
def output_for(draw: st.DrawFn, values: list[str]) -> bytes:
    texts = sorted({text for text, _ in texts_for(values)}) or ["none"]
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(texts).flatmap(mangled),
                st.sampled_from(texts).flatmap(mangled),
                st.text(alphabet=NOISE_ALPHABET, max_size=12),
                st.sampled_from(ESCAPES),
                wrapped_base64(values),
            ),
            min_size=1,
            max_size=8,
        )
    )
    return "".join(pieces).encode("utf-8", "surrogateescape")


@st.composite
def values_and_output(draw: st.DrawFn) -> tuple[list[str], bytes]:
    values = draw(values_strategy)
    return values, draw(output_for(values))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)])]


@SETTINGS
@given(values_and_output())
def test_mask_equals_reference(case: tuple[list[str], bytes]) -> None:
    values, data = case
    assert Masker.build(values).mask(data) == reference_mask(values, data)


@SETTINGS
@given(values_and_output())
def test_mask_without_variants_equals_reference(case: tuple[list[str], bytes]) -> None:
    values, data = case
    policy = MaskPolicy(placeholder=b"[masked]", variants=False)
    expected = reference_mask(values, data, placeholder=b"[masked]", variants=False)
    assert Masker.build(values, policy).mask(data) == expected


@SETTINGS
@given(values_and_output(), st.lists(st.integers(min_value=0), max_size=8))
def test_chunking_never_changes_result(case: tuple[list[str], bytes], cuts: list[int]) -> None:
    values, data = case
    masker = Masker.build(values)
    expected = masker.mask(data)

    for pieces in (split(data, cuts), [data[index : index + 1] for index in range(len(data))]):
        stream = MaskStream()
        released = b""
        for piece in pieces:
            released += stream.feed(masker, piece)
            assert expected.startswith(released)
            assert stream.held <= len(data)
        released += stream.flush(masker)
        assert released == expected
        assert stream.held == 0


@SETTINGS
@given(values_and_output(), st.lists(st.integers(min_value=0), max_size=6))
def test_stream_works_with_rebuilt_masker(case: tuple[list[str], bytes], cuts: list[int]) -> None:
    values, data = case
    stream = MaskStream()
    released = b""
    for index, piece in enumerate(split(data, cuts)):
        # The daemon rebuilds a scope's masker when its values change; a
        # masker rebuilt from the same values must continue the stream.
        released += stream.feed(Masker.build(values[index % len(values) :] + values), piece)
    released += stream.flush(Masker.build(values))
    assert released == Masker.build(values).mask(data)


# Values without whitespace and noise made only of bytes that no text of
# theirs contains, none of them base64 characters or escape-sequence bytes.
PLAIN_VALUE_ALPHABET = "abcXYZ019-_+/=%'\"\\!@<>&äé€😀"
STOP_ALPHABET = ".,;:#~\n"
COMPLETE_ESCAPES = ["\x1b[31m", "\x1b[0m", "\x1b]0;title\x07", "\x1b(B"]


@st.composite
def chunks_ending_in_stop_bytes(draw: st.DrawFn) -> tuple[list[str], list[bytes]]:
    values = draw(st.lists(st.text(alphabet=PLAIN_VALUE_ALPHABET, min_size=4, max_size=20), min_size=1, max_size=3))
    texts = sorted({text for text, _ in texts_for(values)})
    piece = st.one_of(st.sampled_from(texts), st.sampled_from(COMPLETE_ESCAPES), st.text(alphabet=STOP_ALPHABET))
    chunks = []
    for _ in range(draw(st.integers(1, 5))):
        body = "".join(draw(st.lists(piece, max_size=5)))
        # A newline right after 48 or more base64 characters may still join
        # the next line to them (wrapped base64), so a stop byte other than
        # a newline comes first.
        stop = draw(st.sampled_from(STOP_ALPHABET[:-1])) + draw(st.text(alphabet=STOP_ALPHABET, max_size=2))
        chunks.append((body + stop).encode())
    return values, chunks


@SETTINGS
@given(chunks_ending_in_stop_bytes())
def test_stream_holds_nothing_after_stop_byte(case: tuple[list[str], list[bytes]]) -> None:
    values, chunks = case
    masker = Masker.build(values)
    stream = MaskStream()
    released = b""
    for chunk in chunks:
        released += stream.feed(masker, chunk)
        assert stream.held == 0
    assert released == masker.mask(b"".join(chunks))


# Long stretches that repeat with a short period. A scan skips most of the
# hits in such a stretch when every text found in it is masked anywhere,
# which must change nothing: the result equals that of a scan that skips
# nothing, one-shot and streamed.
DENSE_CASES = {
    "one letter": (["aaaaaaaa"], b"x" + b"a" * 20_000 + b"y"),
    "text at the end": (["aaaaaaaa", "aaaaXYZ123"], b"a" * 10_000 + b"aaaaXYZ123 tail"),
    "text at the start": (["aaaaaaaa", "QQaaaaaaaaaaaa"], b"QQ" + b"a" * 10_000 + b" tail"),
    "word-tier text inside": (["abababab", "babababa", "abab"], b"(" + b"ab" * 6_000 + b")"),
    "base64 text inside": (["AAAAAAAA", "\x00" * 12], b"-" + b"A" * 9_000 + b"=="),
    "whitespace text after": (["aaaaaaaa", "aaaa aaaa"], b"a" * 9_000 + b" " + b"a" * 9_000),
    "period of 3": (["xyzxyzxyzxyz"], b"xyz" * 5_000 + b"xy"),
    "escape inside": (["aaaaaaaa"], b"a" * 5_000 + b"\x1b[31m" + b"a" * 5_000),
    "in a title": (["aaaaaaaa"], b"\x1b]0;" + b"a" * 5_000 + b"\x07"),
}


@pytest.mark.parametrize("name", list(DENSE_CASES))
def test_dense_stretch_skip_changes_nothing(name: str) -> None:
    values, data = DENSE_CASES[name]
    with patch.object(patterns, "_MIN_SKIP", 1 << 40):
        expected = Masker.build(values).mask(data)
    masker = Masker.build(values)
    assert masker.mask(data) == expected
    rng = random.Random(name)
    for size in (1, 7, 4096):
        pieces = [data[start : start + size] for start in range(0, len(data), size)]
        if size == 1:
            pieces = pieces[:1000] + [data[1000:]]
        stream = MaskStream()
        released = b"".join(stream.feed(masker, piece) for piece in pieces) + stream.flush(masker)
        assert released == expected, size
    cuts = sorted(rng.sample(range(1, len(data)), 20))
    stream = MaskStream()
    released = b"".join(stream.feed(masker, piece) for piece in split(data, cuts)) + stream.flush(masker)
    assert released == expected


@st.composite
def values_and_wrapped_output(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """Values, and output of coloured, line-wrapped base64 of them between noise and escape sequences."""
    values = draw(st.lists(st.text(alphabet=VALUE_ALPHABET, min_size=8, max_size=40), min_size=1, max_size=2))
    pieces = draw(
        st.lists(
            st.one_of(wrapped_base64(values), st.sampled_from(ESCAPES), st.text(alphabet=NOISE_ALPHABET, max_size=6)),
            min_size=1,
            max_size=5,
        )
    )
    return values, "".join(pieces).encode("utf-8", "surrogateescape")


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(values_and_wrapped_output())
def test_raw_scan_needs_no_wrapped_base64(case: tuple[list[str], bytes]) -> None:
    # The masker looks for base64 across line breaks in the view only. Doing it
    # in the raw output too must not change anything.
    values, data = case
    masker = Masker.build(values)
    original_find = Masker.find

    def find_wrapped_everywhere(self: Masker, *args: object, wrapped: bool = True, **kwargs: object) -> object:
        return original_find(self, *args, **kwargs)

    with patch.object(Masker, "find", find_wrapped_everywhere):
        expected = masker.mask(data)
    assert masker.mask(data) == expected
    assert masker.mask(data) == reference_mask(values, data)


@SETTINGS
@given(values_and_output(), st.lists(st.integers(min_value=0), max_size=10), st.lists(st.integers(1, 4), max_size=10))
def test_feed_many_releases_no_later(case: tuple[list[str], bytes], cuts: list[int], batches: list[int]) -> None:
    # Chunks fed several at a time give the same output, and each chunk's
    # bytes come out no later than with a feed per chunk.
    values, data = case
    masker = Masker.build(values)
    expected = masker.mask(data)
    chunks = split(data, cuts)

    single = MaskStream()
    single_released = []
    total = b""
    for chunk in chunks:
        total += single.feed(masker, chunk)
        single_released.append(len(total))

    batched = MaskStream()
    released = b""
    index = 0
    for size in batches + [len(chunks)]:
        group = chunks[index : index + size]
        if not group:
            break
        outputs = batched.feed_many(masker, group)
        assert len(outputs) == len(group)
        for output in outputs:
            released += output
            assert expected.startswith(released)
            assert len(released) >= single_released[index]
            index += 1
    released += batched.flush(masker)
    assert released == expected
