"""Unit tests of the masking engine: the public cases, each variant, and stream holding."""

from __future__ import annotations

import base64
import json
import random
import string
import threading
from itertools import permutations
from typing import Any

import pytest

import secretd.daemon.masking as masking
from secretd.daemon.masking import MAX_VALUE_BYTES, Masker, MaskPolicy, MaskStream, patterns, value_tier

from . import pure_masking
from .conftest import CASES

HIDDEN = b"<secret-hidden>"

ALL_CASES = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
OUTPUT_CASES = [case for case in ALL_CASES if case["input_kind"] == "output"]


def case_values(case: dict[str, Any]) -> list[str]:
    values = list(case["secrets"].values())
    for earlier in case.get("previous_values", {}).values():
        values.extend(earlier)
    return values


def stream_pieces(
    masker: Masker, pieces: list[bytes], policy: MaskPolicy | None = None, *, stream_type: Any = MaskStream
) -> bytes:
    stream = stream_type(policy)
    released = [stream.feed(masker, piece) for piece in pieces]
    released.append(stream.flush(masker))
    assert stream.held == 0
    return b"".join(released)


def random_pieces(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randint(1, 10))}) if len(data) > 1 else []
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)])]


def bytewise(data: bytes) -> list[bytes]:
    return [data[index : index + 1] for index in range(len(data))]


# The public cases


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[case["id"] for case in OUTPUT_CASES])
def test_case_one_shot(case: dict[str, Any]) -> None:
    masker = Masker.build(case_values(case))
    assert masker.mask(case["input"].encode()) == case["expected"].encode()


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[case["id"] for case in OUTPUT_CASES])
def test_case_streamed_every_way(case: dict[str, Any]) -> None:
    masker = Masker.build(case_values(case))
    data = case["input"].encode()
    expected = case["expected"].encode()

    assert stream_pieces(masker, [data]) == expected
    assert stream_pieces(masker, bytewise(data)) == expected
    rng = random.Random(case["id"])
    for _ in range(25):
        pieces = random_pieces(data, rng)
        assert stream_pieces(masker, pieces) == expected, pieces


CHUNKED_CASES = [case for case in OUTPUT_CASES if "chunks" in case]


@pytest.mark.parametrize("case", CHUNKED_CASES, ids=[case["id"] for case in CHUNKED_CASES])
def test_case_recorded_chunks(case: dict[str, Any]) -> None:
    masker = Masker.build(case_values(case))
    expected = case["expected"].encode()
    minimums = [text.encode() for text in case.get("min_emitted_after_each_chunk", [])]
    stream = MaskStream()
    released = b""
    for index, chunk in enumerate(case["chunks"]):
        released += stream.feed(masker, chunk.encode())
        assert expected.startswith(released)
        if index < len(minimums):
            assert released.startswith(minimums[index]), (index, released)
    released += stream.flush(masker)
    assert released == expected


# Tiers and policy


@pytest.mark.parametrize(
    ("value", "tier"),
    [
        ("", "too_short"),
        ("abc", "too_short"),
        ("  abc \n", "too_short"),
        ("abcd", "word"),
        ("abcdefg", "word"),
        ("\tabcdefg\n", "word"),
        ("abcdefgh", "anywhere"),
        ("ääää", "word"),
        ("äääääää", "word"),
        ("ääääääää", "anywhere"),
    ],
)
def test_value_tier_counts_trimmed_characters(value: str, tier: str) -> None:
    assert value_tier(value) == tier


def test_policy_rejects_small_max_held() -> None:
    with pytest.raises(ValueError, match="max_held"):
        MaskPolicy(max_held=1000)


def test_policy_rejects_str_placeholder() -> None:
    with pytest.raises(TypeError, match="placeholder"):
        MaskPolicy(placeholder="***")  # type: ignore[arg-type]


def test_public_surface_matches_all() -> None:
    exported = {name for name in dir(masking) if not name.startswith("_")}
    submodules = {
        "boundaries",
        "database",
        "escapes",
        "finder",
        "matcher",
        "patterns",
        "periodic",
        "policy",
        "prefixes",
        "runs",
        "stream",
        "variants",
    }
    assert set(masking.__all__) == exported - submodules
    for name in ("MaskPolicy", "Masker", "MaskStream", "value_tier"):
        assert name in masking.__all__


# Building


def test_build_ignores_short_and_empty_values() -> None:
    masker = Masker.build(["", "a", "ab", "abc", "   ", "abc\n"])
    assert masker.pattern_count == 0
    assert masker.mask(b"a ab abc") == b"a ab abc"


def test_build_accepts_duplicates_and_generators() -> None:
    masker = Masker.build(value for value in ["Zq81-secret", "Zq81-secret"])
    assert masker.mask(b"x Zq81-secret y") == b"x " + HIDDEN + b" y"


def test_build_rejects_non_str_value() -> None:
    with pytest.raises(TypeError, match="must be str, got bytes"):
        Masker.build([b"Zq81-secret"])  # type: ignore[list-item]


def test_build_rejects_too_long_value_without_naming_it() -> None:
    value = "Zq81" * (MAX_VALUE_BYTES // 4 + 1)
    with pytest.raises(ValueError, match="maximum") as error:
        Masker.build([value])
    assert "Zq81" not in str(error.value)
    assert error.value.__cause__ is None


def test_build_skips_lone_surrogate_value() -> None:
    masker = Masker.build(["first-Zq81-value", "Zq81-secret\ud800-tail", "second-Xy77-value", "\udfff-other-tail"])
    assert [skipped.index for skipped in masker.skipped] == [1, 3]
    for skipped in masker.skipped:
        assert "surrogate" in skipped.reason
        assert "Zq81" not in skipped.reason
        assert "tail" not in skipped.reason
    assert "Zq81" not in repr(masker)
    out = masker.mask(b"a first-Zq81-value b second-Xy77-value c Zq81-secret")
    assert out == b"a " + HIDDEN + b" b " + HIDDEN + b" c Zq81-secret"


def test_build_skips_nothing_for_valid_values() -> None:
    masker = Masker.build(["first-Zq81-value", b"pass\xffword".decode("utf-8", "surrogateescape")])
    assert masker.skipped == ()


def test_undecodable_bytes_value_matches_raw_bytes() -> None:
    # os.environ and os.fsdecode keep undecodable bytes as U+DC80 to U+DCFF.
    value = b"pass\xffword-Zq81".decode("utf-8", "surrogateescape")
    masker = Masker.build([value])
    assert masker.mask(b"a pass\xffword-Zq81 b") == b"a " + HIDDEN + b" b"
    assert masker.mask(b"a pass%FFword-Zq81 b") == b"a " + HIDDEN + b" b"
    assert masker.mask(b"a " + base64.b64encode(b"pass\xffword-Zq81") + b" b") == b"a " + HIDDEN + b" b"


def test_build_accepts_value_at_maximum() -> None:
    value = "".join(random.Random(3).choice("abcdefXYZ0123") for _ in range(MAX_VALUE_BYTES))
    masker = Masker.build([value])
    assert masker.mask(b"<" + value.encode() + b">") == b"<" + HIDDEN + b">"


def test_registration_order_never_matters() -> None:
    values = ["helloWorld", "helloWorld123", "World123-tail", "Zq81-alpha-Xy77"]
    data = b"a helloWorld123-tail b helloWorld c Zq81-alpha-Xy77World123-tail\n"
    results = {Masker.build(list(order)).mask(data) for order in permutations(values)}
    assert len(results) == 1


def test_placeholder_is_configurable() -> None:
    masker = Masker.build(["Zq81-secret"], MaskPolicy(placeholder=b"***"))
    assert masker.mask(b"pw=Zq81-secret;") == b"pw=***;"


def test_placeholder_collision_replaced_once() -> None:
    masker = Masker.build(["secret-hidden", "Zq81-token-value"])
    assert masker.mask(b"A=Zq81-token-value\n") == b"A=" + HIDDEN + b"\n"


# Variants


VALUE = "p@ss w0rd'<&>/é\n€"


def variant_texts(value: str) -> dict[str, str]:
    data = value.encode()
    from urllib.parse import quote, quote_plus

    return {
        "json_ascii": json.dumps(value)[1:-1],
        "json_ascii_upper": json.dumps(value)[1:-1].replace("\\u00e9", "\\u00E9").replace("\\u20ac", "\\u20AC"),
        "json_utf8": json.dumps(value, ensure_ascii=False)[1:-1],
        "json_go": json.dumps(value, ensure_ascii=False)[1:-1]
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026"),
        "percent": quote(value, safe=""),
        "percent_lower": quote(value, safe="").lower(),
        "percent_plus": quote_plus(value, safe=""),
        "percent_js": quote(value, safe="!'()*"),
        "bash_single": "'" + value.replace("'", "'\\''") + "'",
        "bash_double": "'" + value.replace("'", "'\"'\"'") + "'",
        "ansi_c": "$'p@ss w0rd\\'<&>/é\\n€'",
        "base64": base64.b64encode(data).decode(),
        "base64_url": base64.urlsafe_b64encode(data).decode(),
        "base64_shifted_1": base64.b64encode(b"x" + data + b"\n").decode(),
        "base64_shifted_2": base64.b64encode(b"xy" + data).decode(),
    }


@pytest.mark.parametrize("name", list(variant_texts(VALUE)))
def test_variant_is_masked(name: str) -> None:
    text = variant_texts(VALUE)[name]
    masker = Masker.build([VALUE])
    out = masker.mask(f"before {text} after".encode())
    assert HIDDEN in out
    assert b"w0rd" not in out
    assert out.startswith(b"before ")
    assert out.endswith(b" after")


@pytest.mark.parametrize("name", ["json_ascii", "percent", "bash_single", "base64"])
def test_variants_off_masks_only_forms(name: str) -> None:
    text = variant_texts(VALUE)[name]
    masker = Masker.build([VALUE], MaskPolicy(variants=False))
    assert masker.mask(f"before {text} after".encode()) == f"before {text} after".encode()
    assert masker.mask(f"raw {VALUE} end".encode()) == b"raw " + HIDDEN + b" end"


def test_base64_match_covers_whole_run() -> None:
    masker = Masker.build(["s3cr3tPa55"])
    blob = base64.b64encode(b"prefix-s3cr3tPa55-suffix\n")
    assert masker.mask(b"KEY=" + blob + b" end") == b"KEY=" + HIDDEN + b" end"


def test_base64_run_stops_at_other_alphabet() -> None:
    value = "Zq81>>>?secret"
    standard = base64.b64encode(value.encode())
    url_safe = base64.urlsafe_b64encode(value.encode())
    assert b"+" in standard
    masker = Masker.build([value])
    assert masker.mask(b"x-" + standard + b".y") == b"x-" + HIDDEN + b".y"
    assert masker.mask(b"x+" + url_safe + b".y") == b"x+" + HIDDEN + b".y"
    assert masker.mask(b"x+" + standard + b".y") == HIDDEN + b".y"


def test_short_base64_of_short_value_dropped() -> None:
    masker = Masker.build(["{\n}\nabcd"])
    assert masker.mask(b"e f ew== fQ== { }") == b"e f ew== fQ== { }"


# Whitespace and lines


def test_inner_whitespace_matches_any_run() -> None:
    masker = Masker.build(["alpha beta\tgamma-Zq81"])
    assert masker.mask(b"[alpha\r\n   beta gamma-Zq81]") == b"[" + HIDDEN + b"]"
    assert masker.mask(b"[alphabeta gamma-Zq81]") == b"[alphabeta gamma-Zq81]"


def test_outer_whitespace_of_exact_form_is_literal() -> None:
    masker = Masker.build(["Pa55w0rd-Zq81\n"])
    assert masker.mask(b"Pa55w0rd-Zq81\r\nnext") == HIDDEN + b"\r\nnext"
    assert masker.mask(b"Pa55w0rd-Zq81\nnext") == HIDDEN + b"next"


def test_each_long_line_masked_alone() -> None:
    masker = Masker.build(["first-line-Zq81\nab\nsecond-line-Xy77"])
    assert masker.mask(b"a second-line-Xy77 b ab c") == b"a " + HIDDEN + b" b ab c"


# Word tier


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"docker", HIDDEN),
        (b"run docker build", b"run " + HIDDEN + b" build"),
        (b"dockerfile", b"dockerfile"),
        (b"my_docker", b"my_docker"),
        (b"docker2", b"docker2"),
        ("édocker".encode(), "édocker".encode()),
        ("docker日".encode(), "docker日".encode()),
        (b"(docker)", b"(" + HIDDEN + b")"),
        (b"\x1b[1mdocker\x1b[0m", b"\x1b[1m" + HIDDEN + b"\x1b[0m"),
        (b"x\x1b[1mdocker", b"x\x1b[1mdocker"),
    ],
)
def test_word_tier_masks_whole_words_only(data: bytes, expected: bytes) -> None:
    assert Masker.build(["docker"]).mask(data) == expected


def test_word_tier_has_no_variants() -> None:
    masker = Masker.build(["p@ss"])
    assert masker.mask(b"p%40ss cEBzcw== p@ss") == b"p%40ss cEBzcw== " + HIDDEN


# Escape sequences


def test_osc_hyperlink_inside_value_is_transparent() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    data = b"t=\x1b]8;;https://example.com\x1b\\ghp_AbCd\x1b]8;;\x07-EXAMPLE-Ef5Gh7\x1b[0m."
    assert masker.mask(data) == b"t=\x1b]8;;https://example.com\x1b\\" + HIDDEN + b"\x1b[0m."


def test_value_with_escape_sequence_matches_coloured_output() -> None:
    masker = Masker.build(["\x1b[1mbold-Zq81-secret\x1b[0m"])
    # The original bytes contain the whole value, escape sequences included.
    assert masker.mask(b"x \x1b[1mbold-Zq81-secret\x1b[0m y") == b"x " + HIDDEN + b" y"
    assert masker.mask(b"x \x1b[4mbold-Zq81-secret\x1b[0m y") == b"x \x1b[4m" + HIDDEN + b"\x1b[0m y"
    assert masker.mask(b"x bold-Zq81-secret y") == b"x " + HIDDEN + b" y"


def test_unfinished_escape_is_plain_at_end() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    assert masker.mask(b"ok \x1b[31") == b"ok \x1b[31"


def test_malformed_escape_does_not_hide_value() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    assert masker.mask(b"\x1b[\nghp_AbCd-EXAMPLE-Ef5Gh7") == b"\x1b[\n" + HIDDEN


# The text of OSC sequences (window titles, hyperlinks), DCS, APC, PM and SOS.
STRING_SEQUENCES = {
    "title": ("\x1b]0;curl -H 'Authorization: Bearer ", "'\x07"),
    "title_st": ("\x1b]2;", "\x1b\\"),
    "hyperlink": ("\x1b]8;;https://x/dl?token=", "\x1b\\download\x1b]8;;\x1b\\"),
    "dcs": ("\x1bP1$r", "\x1b\\"),
    "apc": ("\x1b_Gtoken=", "\x1b\\"),
    "pm": ("\x1b^", "\x1b\\"),
    "sos": ("\x1bX", "\x1b\\"),
}


@pytest.mark.parametrize("name", list(STRING_SEQUENCES))
def test_value_inside_string_sequence_masked(name: str) -> None:
    opening, closing = STRING_SEQUENCES[name]
    masker = Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    data = f"a {opening}ghp_AbCd-EXAMPLE-Ef5Gh7{closing} b".encode()
    expected = f"a {opening}".encode() + HIDDEN + f"{closing} b".encode()
    assert masker.mask(data) == expected
    assert stream_pieces(masker, [data]) == expected
    assert stream_pieces(masker, bytewise(data)) == expected


def test_base64_variant_inside_title_masked() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    encoded = base64.b64encode(b"ghp_AbCd-EXAMPLE-Ef5Gh7")
    assert masker.mask(b"\x1b]0;token " + encoded + b"\x07ok") == b"\x1b]0;token " + HIDDEN + b"\x07ok"


@pytest.mark.parametrize("prefix", ["\x1b", "\x1b[", "\x1b[1;", "\x1b(", "\x1b#"])
def test_escape_right_before_value_does_not_hide_it(prefix: str) -> None:
    # "\x1b[9l" is a whole CSI sequence, so the view starts at "0Bb5xF".
    masker = Masker.build(["9l0Bb5xF"])
    data = f"x {prefix}9l0Bb5xF y".encode()
    expected = f"x {prefix}".encode() + HIDDEN + b" y"
    assert masker.mask(data) == expected
    assert stream_pieces(masker, bytewise(data)) == expected


def test_no_random_value_survives_escape_before_it() -> None:
    rng = random.Random(421)
    values = ["".join(rng.choice(string.ascii_letters + string.digits) for _ in range(8)) for _ in range(300)]
    masker = Masker.build(values)
    for value in values:
        for prefix in ("\x1b", "\x1b[", "\x1b(", "\x1b[2;", "\x1b]0;"):
            data = f"{prefix}{value}\n".encode()
            assert value.encode() not in masker.mask(data), (prefix, value)
            assert value.encode() not in stream_pieces(masker, bytewise(data)), (prefix, value)


def test_placeholders_merge_when_only_escape_bytes_lie_between() -> None:
    masker = Masker.build(["first-Zq81-value", "second-Xy77-value"])
    cases = {
        b"first-Zq81-value\x1b[0msecond-Xy77-value": HIDDEN,
        # The end of a title lies between them, and goes with the placeholder.
        b"\x1b]0;first-Zq81-value\x07second-Xy77-value": b"\x1b]0;" + HIDDEN,
        b"\x1b]0;first-Zq81-value\x07 second-Xy77-value": b"\x1b]0;" + HIDDEN + b"\x07 " + HIDDEN,
    }
    for data, expected in cases.items():
        assert masker.mask(data) == expected
        assert stream_pieces(masker, bytewise(data)) == expected


# Line-wrapped base64

# A fine-grained GitHub token is 93 characters long, so its base64 is 124.
PAT = "github_pat_11ABCDE2Y0qQ8rT3vW6yZ9bC_" + "".join(random.Random(93).choice(string.ascii_letters) for _ in range(57))


def wrapped(data: bytes, width: int, newline: bytes = b"\n") -> bytes:
    return b"".join(data[start : start + width] + newline for start in range(0, len(data), width))


@pytest.mark.parametrize(
    ("width", "newline"),
    [(76, b"\n"), (64, b"\n"), (70, b"\n"), (76, b"\r\n")],
    ids=["gnu-base64", "openssl", "openssh-key", "crlf"],
)
def test_wrapped_base64_of_long_value_masked(width: int, newline: bytes) -> None:
    assert len(PAT) == 93
    masker = Masker.build([PAT])
    prompt = b'$ echo -n "$TOKEN" | base64' + newline
    data = prompt + wrapped(base64.b64encode(PAT.encode()), width, newline) + b"$ "
    expected = prompt + HIDDEN + newline + b"$ "
    assert masker.mask(data) == expected
    assert stream_pieces(masker, bytewise(data)) == expected
    assert stream_pieces(masker, random_pieces(data, random.Random(width))) == expected


@pytest.mark.parametrize("offset", [0, 1, 2, 19, 40, 57, 58, 75, 76])
def test_wrapped_base64_of_env_file_masked(offset: int) -> None:
    value = "Zq81xY77pQ2wE4rT6yU8iO0p"
    env = b"#" * offset + b"\nAPP_ENV=production\nDB_PASSWORD=" + value.encode() + b"\nLOG_LEVEL=debug\n"
    masker = Masker.build([value])
    data = b"$ base64 .env\n" + wrapped(base64.b64encode(env), 76) + b"$ "
    expected = b"$ base64 .env\n" + HIDDEN + b"\n$ "
    assert masker.mask(data) == expected
    assert stream_pieces(masker, bytewise(data)) == expected


def test_url_safe_wrapped_base64_masked() -> None:
    masker = Masker.build([PAT])
    blob = wrapped(base64.urlsafe_b64encode(b"\xfb\xff" * 20 + PAT.encode()), 64)
    assert masker.mask(blob) == HIDDEN + b"\n"


def test_lines_under_48_characters_are_not_joined() -> None:
    # One git object name a line, as `git rev-list` prints them.
    masker = Masker.build([PAT])
    stream = MaskStream()
    for index in range(5):
        line = f"{index:040x}\n".encode()
        assert stream.feed(masker, line) == line
        assert stream.held == 0


def test_stream_holds_full_base64_line() -> None:
    masker = Masker.build([PAT])
    line = base64.b64encode(bytes(range(57)))
    assert len(line) == 76
    stream = MaskStream()
    assert stream.feed(masker, line + b"\n") == b""
    assert stream.feed(masker, b"$ ") == line + b"\n$ "
    assert stream.held == 0


# Streams: what is held back


def test_stream_releases_line_without_prefix() -> None:
    masker = Masker.build(["jdbc-Pa55-Zq81"])
    stream = MaskStream()
    assert stream.feed(masker, b"connecting to jdbc:postgresql://db\n") == b"connecting to jdbc:postgresql://db\n"
    assert stream.held == 0


def test_stream_holds_prefix_until_disproved() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE"])
    stream = MaskStream()
    assert stream.feed(masker, b"token: ghp_Ab") == b"token: "
    assert stream.held == len(b"ghp_Ab")
    assert stream.feed(masker, b"X!") == b"ghp_AbX!"
    assert stream.held == 0


def test_stream_holds_word_until_next_character() -> None:
    masker = Masker.build(["docker"])
    stream = MaskStream()
    assert stream.feed(masker, b"run docker") == b"run "
    assert stream.held == len(b"docker")
    assert stream.feed(masker, b" build\n") == HIDDEN + b" build\n"


def test_stream_holds_word_split_inside_utf8_neighbour() -> None:
    masker = Masker.build(["docker"])
    stream = MaskStream()
    first = stream.feed(masker, b"docker" + "日".encode()[:1])
    rest = stream.feed(masker, "日".encode()[1:] + b"!")
    assert first + rest + stream.flush(masker) == "docker日!".encode()


def test_stream_releases_word_inside_longer_word() -> None:
    masker = Masker.build(["pass"])
    stream = MaskStream()
    assert stream.feed(masker, b"compass!") == b"compass!"


def test_stream_holds_base64_run_at_end() -> None:
    masker = Masker.build(["s3cr3tPa55"])
    stream = MaskStream()
    assert stream.feed(masker, b"data: AAAA") == b"data: "
    assert stream.held == 4
    assert stream.feed(masker, b"czNjcjN0UGE1NQo=\n") == HIDDEN + b"\n"


def test_stream_holds_unfinished_escape() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE"])
    stream = MaskStream()
    assert stream.feed(masker, b"ok \x1b[1;3") == b"ok "
    assert stream.held == len(b"\x1b[1;3")
    assert stream.feed(masker, b"1m!") == b"\x1b[1;31m!"


def test_stream_emits_complete_match_before_longer_one() -> None:
    masker = Masker.build(["helloWorld", "helloWorld123"])
    stream = MaskStream()
    first = stream.feed(masker, b"x helloWorld")
    assert first == b"x " + HIDDEN
    second = stream.feed(masker, b"123 y\n")
    assert second == b" y\n"
    assert first + second + stream.flush(masker) == masker.mask(b"x helloWorld123 y\n")


def test_stream_multibyte_value_split_across_chunks() -> None:
    masker = Masker.build(["pässwörd-Zq81€"])
    data = "raw: pässwörd-Zq81€ end".encode()
    for cut in range(1, len(data)):
        assert stream_pieces(masker, [data[:cut], data[cut:]]) == b"raw: " + HIDDEN + b" end"


def test_stream_can_be_reused_after_flush() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE"])
    stream = MaskStream()
    released = stream.feed(masker, b"a ghp_Ab")
    assert released + stream.flush(masker) == b"a ghp_Ab"
    assert stream.held == 0
    assert stream.feed(masker, b"ghp_AbCd-EXAMPLE\n") == HIDDEN + b"\n"


def test_empty_masker_passes_through_and_holds_nothing() -> None:
    masker = Masker.build([])
    stream = MaskStream()
    assert stream.feed(masker, b"abc \x1b[3") == b"abc \x1b[3"
    assert stream.held == 0
    assert masker.mask(b"x\x1b[31my") == b"x\x1b[31my"


def test_stream_releases_held_bytes_when_masker_becomes_empty() -> None:
    stream = MaskStream()
    assert stream.feed(Masker.build(["ghp_AbCd-EXAMPLE"]), b"a ghp_Ab") == b"a "
    assert stream.feed(Masker.build([]), b"Cd") == b"ghp_AbCd"
    assert stream.held == 0


def test_stream_accepts_superset_masker() -> None:
    old = Masker.build(["first-Zq81-value"])
    new = Masker.build(["first-Zq81-value", "second-Xy77-value"])
    stream = MaskStream()
    out = stream.feed(old, b"1 first-Zq81-value 2 second-Xy77-value\n")
    assert out == b"1 " + HIDDEN + b" 2 second-Xy77-value\n"
    out += stream.feed(new, b"3 second-Xy77-")
    out += stream.feed(new, b"value 4 first-Zq81-value\n")
    out += stream.flush(new)
    assert out == b"1 " + HIDDEN + b" 2 second-Xy77-value\n3 " + HIDDEN + b" 4 " + HIDDEN + b"\n"


def test_stream_superset_masker_matches_held_prefix() -> None:
    old = Masker.build(["first-Zq81-value"])
    new = Masker.build(["first-Zq81-value", "first-Zq81-valueXY"])
    stream = MaskStream()
    out = stream.feed(old, b"a first-Zq81-value")
    out += stream.feed(new, b"XY b")
    out += stream.flush(new)
    assert out == b"a " + HIDDEN + b" b"


# Cost of dense matches, long base64 runs and long held buffers

TOKEN_LOG_LINE = b"2026-12-04 INFO request ok auth=ghp_AbCd-EXAMPLE-Ef5Gh7 path=/api\n"


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


# The tests that count work replace methods, so they run the masker from
# its Python sources (see pure_masking), which the compiled modules are built from.
pure = pure_masking.load()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: type, *names: str) -> dict[str, int]:
    """Count the calls of methods of `owner`: how much work a masking does, without timing it."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(owner, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("prefix", [b"", b"x"])
def test_dense_repeats_checked_once_per_stretch(prefix: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # "a" is a base64 character, so with "x" before it the run is held whole.
    # Each of the 4 million positions is a hit; a periodic stretch is skipped.
    checks = count_calls(monkeypatch, pure.patterns.PatternTable, "_verify")
    masker = pure.Masker.build(["aaaaaaaa"])
    data = prefix + b"a" * (4 << 20)
    assert masker.mask(data) == prefix + HIDDEN
    assert checks["_verify"] < 1_000
    checks["_verify"] = 0
    assert stream_pieces(masker, chunks_of(data[: 1 << 20], 8192), stream_type=pure.MaskStream) == prefix + HIDDEN
    assert checks["_verify"] < 20_000


def test_base64_of_token_log_extends_its_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # `base64 -w0 app.log`: a base64 match every 90 characters, in one run
    # of 600 000 characters, which is followed once, not once per match.
    work = count_calls(monkeypatch, pure.runs.Runs, "_extend", "start_of")
    masker = pure.Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    data = base64.b64encode(TOKEN_LOG_LINE * 10_000)
    assert len(data) > 600_000
    assert masker.mask(data) == HIDDEN
    assert work["_extend"] + work["start_of"] <= 10


def test_stream_keeps_little_of_masked_base64_run() -> None:
    masker = Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    data = base64.b64encode(TOKEN_LOG_LINE * 10_000)
    stream = MaskStream()
    released = []
    for chunk in chunks_of(data, 8192):
        released.append(stream.feed(masker, chunk))
        assert stream.held < 1024
    released.append(stream.flush(masker))
    assert b"".join(released) == HIDDEN


@pytest.mark.parametrize("width", [0, 76])
def test_stream_scans_held_run_without_match_once(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Base64 of random bytes is held whole, up to max_held, in case a match
    # comes later, but each feed scans only what is new.
    scanned = [0]
    scan = pure.database.Database.scan

    def counting_scan(self: Any, data: bytes, on_match: Any) -> bool:
        scanned[0] += len(data)
        return scan(self, data, on_match)

    monkeypatch.setattr(pure.database.Database, "scan", counting_scan)
    masker = pure.Masker.build(["ghp_AbCd-EXAMPLE-Ef5Gh7"])
    blob = base64.b64encode(random.Random(5).randbytes(600_000))
    data = wrapped(blob, width) if width else blob
    assert stream_pieces(masker, chunks_of(data, 8192), stream_type=pure.MaskStream) == data
    assert scanned[0] < 2 * len(data)


def test_literal_anchors_split_over_several_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pure.patterns, "_CHUNK_MAX", 500)
    rng = random.Random(8)
    values = ["".join(rng.choice(string.ascii_letters) for _ in range(20)) for _ in range(400)]
    masker = pure.Masker.build(values)
    for value in values[:5] + values[-5:]:
        assert masker.mask(f"<{value}>".encode()) == b"<" + HIDDEN + b">"
        encoded = base64.b64encode(value.encode())
        assert masker.mask(b"<" + encoded + b">") == b"<" + HIDDEN + b">"


def test_value_with_nul_byte_masked() -> None:
    # The literal compiler of python-hyperscan 0.9.1 would cut this anchor at the NUL.
    masker = Masker.build(["abc\x00defgh-Zq81"])
    assert masker.mask(b"x abc\x00defgh-Zq81 y") == b"x " + HIDDEN + b" y"
    assert masker.mask(b"x abc y") == b"x abc y"


# Streams: the bound on held bytes


def test_held_bytes_stay_under_max_held() -> None:
    policy = MaskPolicy(max_held=16 * 1024)
    masker = Masker.build(["s3cr3tPa55", "ghp_AbCd-EXAMPLE"], policy)
    rng = random.Random(5)
    blob = "".join(rng.choice("ABCDEFGHabcdefgh0123") for _ in range(100_000)).encode()
    stream = MaskStream(policy)
    released = []
    for start in range(0, len(blob), 4096):
        released.append(stream.feed(masker, blob[start : start + 4096]))
        assert stream.held <= policy.max_held
    released.append(stream.flush(masker))
    assert b"".join(released) == blob


def test_forced_release_still_masks_complete_match() -> None:
    policy = MaskPolicy(max_held=16 * 1024)
    masker = Masker.build(["s3cr3tPa55", "ghp_AbCd-EXAMPLE"], policy)
    secret = base64.b64encode(b"s3cr3tPa55")
    blob = b"A" * 30_000 + secret + b"B" * 30_000
    stream = MaskStream(policy)
    released = []
    for start in range(0, len(blob), 4096):
        released.append(stream.feed(masker, blob[start : start + 4096]))
        assert stream.held <= policy.max_held
    released.append(stream.flush(masker))
    out = b"".join(released)
    assert secret not in out
    assert HIDDEN in out
    assert out.startswith(b"A" * 1000)


def test_forced_release_masks_rest_of_stretched_match() -> None:
    policy = MaskPolicy(max_held=16 * 1024)
    masker = Masker.build(["alpha-Zq81 beta-Xy77-secret"], policy)
    data = b"x alpha-Zq81" + b" " * 28_000 + b"beta-Xy77-secret y\n"
    stream = MaskStream(policy)
    released = []
    for start in range(0, len(data), 4096):
        released.append(stream.feed(masker, data[start : start + 4096]))
        assert stream.held <= policy.max_held
    released.append(stream.flush(masker))
    out = b"".join(released)
    assert out.startswith(b"x alpha-Zq81 ")
    assert out.endswith(HIDDEN + b" y\n")
    assert b"beta" not in out


def test_escapes_after_placeholder_stay_bounded() -> None:
    policy = MaskPolicy(max_held=16 * 1024)
    masker = Masker.build(["ghp_AbCd-EXAMPLE"], policy)
    stream = MaskStream(policy)
    released = [stream.feed(masker, b"x ghp_AbCd-EXAMPLE")]
    for _ in range(20):
        released.append(stream.feed(masker, b"\x1b[0m" * 1000))
        assert stream.held <= policy.max_held
    released.append(stream.flush(masker))
    assert b"".join(released) == b"x " + HIDDEN + b"\x1b[0m" * 20_000


def test_value_longer_than_half_max_held_rejected() -> None:
    policy = MaskPolicy(max_held=16 * 1024)
    with pytest.raises(ValueError, match="max_held") as error:
        Masker.build(["\x01" * 2000], policy)
    assert "\\u0001" not in str(error.value)


# No value in any repr or message


def test_repr_never_shows_values_or_held_bytes() -> None:
    value = "ghp_AbCd-EXAMPLE-Zq81"
    masker = Masker.build([value, "docker"])
    stream = MaskStream()
    stream.feed(masker, b"token ghp_AbCd-EXA")
    assert stream.held > 0
    for text in (repr(masker), str(masker), repr(stream), str(stream), repr(MaskPolicy()), repr(masker.policy)):
        assert "ghp_" not in text
        assert "docker" not in text
        assert "EXA" not in text


def test_no_value_in_error_messages() -> None:
    value = "Zq81-unique-marker-" + "x" * MAX_VALUE_BYTES
    errors: list[BaseException] = []
    for attempt in (
        lambda: Masker.build([value]),
        lambda: Masker.build(["Zq81-unique-marker", 42]),  # type: ignore[list-item]
        lambda: Masker.build(["Zq81-unique-marker" + "\x01" * 4000], MaskPolicy(max_held=16 * 1024)),
    ):
        with pytest.raises((TypeError, ValueError)) as error:
            attempt()
        errors.append(error.value)
    for error in errors:
        assert "Zq81-unique-marker" not in str(error)
        assert "Zq81-unique-marker" not in repr(error)
        assert error.__cause__ is None or "Zq81" not in str(error.__cause__)


# Sharing


def test_masker_shared_across_threads() -> None:
    masker = Masker.build([f"thread-secret-{index:04d}-Zq81" for index in range(200)])
    data = b" ".join(f"x thread-secret-{index:04d}-Zq81 y".encode() for index in range(200)) * 20
    expected = masker.mask(data)
    results: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            out = masker.mask(data)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    assert all(result == expected for result in results)
    assert b"thread-secret" not in expected


def test_decoy_anchors_mask_nothing() -> None:
    values = [f"Zq81-decoy-value-{index:02d}-Xy77" for index in range(3)]
    masker = Masker.build(values)
    count = masker.pattern_count
    assert patterns._PAD_MIN <= count < patterns._PAD_TO
    decoys = patterns.decoys(count)
    assert len(decoys) == patterns._PAD_TO - count
    binary = b"\x00".join(decoys) + b" " + values[1].encode() + b" " + decoys[0]
    assert masker.mask(binary) == binary.replace(values[1].encode(), b"<secret-hidden>")
    stream = MaskStream()
    released = b"".join(stream.feed(masker, binary[at : at + 7]) for at in range(0, len(binary), 7))
    assert released + stream.flush(masker) == masker.mask(binary)
