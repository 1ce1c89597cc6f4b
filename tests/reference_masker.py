"""A plain, slow reference masker: the masking policy written as directly as possible.

It shares no code with `secretd.daemon.masking`. It lists every variant of
every value (padded base64 included), finds every occurrence of each one with
its own regular expression at every start position, filters and extends the
occurrences, merges them and rebuilds the output. It does this twice: in
the output with terminal escape sequences removed and in the output as it
is, and masks what either finds. Base64 variants are also found across the
line breaks of wrapped base64. Property tests compare the real masker with
it on small inputs; it is far too slow for anything else.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

SPACE_CHARS = " \t\n\r\x0b\x0c"
SPACE_BYTES = SPACE_CHARS.encode()
PLACEHOLDER = b"<secret-hidden>"

STANDARD_ALPHABET = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
URL_ALPHABET = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# A line break joins two lines of wrapped base64 when the line before it has
# at least this many characters of either alphabet and nothing else, and a
# character of either alphabet follows it.
WRAPPED_LINE = 48


def raw(text: str) -> bytes:
    """UTF-8, with U+DC80 to U+DCFF standing for the undecodable bytes they came from."""
    return text.encode("utf-8", "surrogateescape")


def trimmed_length(text: str) -> int:
    return len(text.strip(SPACE_CHARS))


def forms_of(value: str) -> list[str]:
    """The value, trimmed, quote-stripped, each trimmed line of a multi-line value, and these without escape sequences."""
    trimmed = value.strip(SPACE_CHARS)
    result = [value, trimmed]
    if len(trimmed) >= 2 and trimmed[0] in "'\"" and trimmed[-1] == trimmed[0]:
        result.append(trimmed[1:-1])
    lines = trimmed.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(lines) > 1:
        result += [line.strip(SPACE_CHARS) for line in lines]
    result += [strip_escapes(raw(form))[0].decode("utf-8", "surrogateescape") for form in result if "\x1b" in form]
    return result


def _json_forms(text: str) -> list[str]:
    ascii_form = json.dumps(text)[1:-1]
    utf8_form = json.dumps(text, ensure_ascii=False)[1:-1]
    go_form = ""
    for char in utf8_form:
        go_form += {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}.get(
            char, char
        )
    out = []
    for form in (ascii_form, utf8_form, go_form):
        out.append(form)
        upper = ""
        index = 0
        while index < len(form):
            if form[index] == "\\" and form[index + 1] == "u":
                upper += "\\u" + form[index + 2 : index + 6].upper()
                index += 6
            elif form[index] == "\\":
                upper += form[index : index + 2]
                index += 2
            else:
                upper += form[index]
                index += 1
        out.append(upper)
    return out


def _percent_forms(text: str) -> list[str]:
    out = []
    errors = "surrogateescape"
    for encoded in (
        quote(text, safe="", errors=errors),
        quote(text, safe="!'()*", errors=errors),
        quote(text, safe="/", errors=errors),
        quote_plus(text, safe="", errors=errors),
    ):
        out.append(encoded)
        lower = list(encoded)
        for index, char in enumerate(encoded):
            if char == "%":
                lower[index + 1] = lower[index + 1].lower()
                lower[index + 2] = lower[index + 2].lower()
        out.append("".join(lower))
    return out


def _ansi_c(text: str) -> str:
    named = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 27: "E", 92: "\\", 39: "'"}
    out = ""
    for char in text:
        code = ord(char)
        if code in named:
            out += "\\" + named[code]
        elif code < 32 or code == 127:
            out += "\\" + oct(code)[2:].rjust(3, "0")
        else:
            out += char
    return out


def _base64_forms(text: str) -> list[tuple[str, str]]:
    """(encoded text, alphabet name) for 3 alignments, padded and with padding and last character removed."""
    data = raw(text)
    out = []
    for skip in (0, 1, 2):
        part = data[skip:]
        if not part:
            continue
        padded = base64.b64encode(part).decode()
        stripped = padded.rstrip("=")
        if len(part) % 3 != 0:
            stripped = stripped[:-1]
        for encoded in (padded, stripped):
            out.append((encoded, "standard"))
            out.append((base64.urlsafe_b64encode(part).decode()[: len(encoded)], "url"))
    return out


def texts_for(values: Iterable[str], variants: bool = True) -> list[tuple[str, str]]:
    """Every (text, kind) to mask; kind is "anywhere", "word", "standard" or "url"."""
    out = []
    for value in values:
        for form in forms_of(value):
            length = trimmed_length(form)
            if length < 4:
                continue
            if length < 8:
                out.append((form, "word"))
                continue
            out.append((form, "anywhere"))
            if not variants:
                continue
            encoded = _json_forms(form) + _percent_forms(form)
            encoded += [form.replace("'", "'\\''"), form.replace("'", "'\"'\"'"), _ansi_c(form)]
            out += [(text, "anywhere") for text in encoded if len(text) >= 8]
            out += [(text, name) for text, name in _base64_forms(form) if len(text) >= 8]
    return out


def _regex_for(text: bytes) -> re.Pattern[bytes]:
    """Literal text; an inner whitespace run matches any non-empty whitespace run."""
    stripped = text.strip(SPACE_BYTES)
    if not stripped:
        return re.compile(re.escape(text))
    lead = text[: text.index(stripped)]
    trail = text[len(lead) + len(stripped) :]
    space_run = b"[" + re.escape(SPACE_BYTES) + b"]+"
    words = re.split(space_run, stripped)
    words[0] = lead + words[0]
    words[-1] = words[-1] + trail
    return re.compile(space_run.join(re.escape(word) for word in words))


def _escape_length(data: bytes, at: int) -> int:
    """Length of the terminal escape sequence starting at `at`, or 0 for none."""
    size = len(data)
    if at + 1 >= size:
        return 0
    kind = data[at + 1]
    index = at + 2
    if kind == ord("["):
        params = 0
        while index < size and 0x30 <= data[index] <= 0x3F and params < 64:
            index += 1
            params += 1
        inter = 0
        while index < size and 0x20 <= data[index] <= 0x2F and inter < 16:
            index += 1
            inter += 1
        if index < size and 0x40 <= data[index] <= 0x7E:
            return index + 1 - at
        return 0
    if kind == ord("]") or kind in b"PX^_":
        body = 0
        stop = {0x1B} if kind != ord("]") else {0x1B, 0x07}
        while index < size and data[index] not in stop and body < 4096:
            index += 1
            body += 1
        if index < size and data[index] == 0x07 and kind == ord("]"):
            return index + 1 - at
        if index + 1 < size and data[index] == 0x1B and data[index + 1] == ord("\\"):
            return index + 2 - at
        return 0
    if 0x20 <= kind <= 0x2F:
        inter = 1
        index = at + 2
        while index < size and 0x20 <= data[index] <= 0x2F and inter < 16:
            index += 1
            inter += 1
        if index < size and 0x30 <= data[index] <= 0x7E:
            return index + 1 - at
        return 0
    if 0x30 <= kind <= 0x7E and kind not in b"PX[]^_":
        return 2
    return 0


def escape_sequences(data: bytes) -> list[tuple[int, int]]:
    """The (start, end) of every escape sequence, left to right."""
    found = []
    index = 0
    while index < len(data):
        length = _escape_length(data, index) if data[index] == 0x1B else 0
        if length:
            found.append((index, index + length))
            index += length
        else:
            index += 1
    return found


def strip_escapes(data: bytes) -> tuple[bytes, list[int]]:
    """The bytes outside escape sequences, and the original index of each."""
    inside = set()
    for start, end in escape_sequences(data):
        inside.update(range(start, end))
    origin = [index for index in range(len(data)) if index not in inside]
    return bytes(data[index] for index in origin), origin


def _is_word(char: str | None) -> bool:
    return char is not None and re.match(r"\w", char) is not None


def unwrap(text: bytes) -> tuple[bytes, list[int]]:
    """The text without the line breaks that join lines of wrapped base64, and the index of each byte kept."""
    either = STANDARD_ALPHABET | URL_ALPHABET
    dropped = set()
    line_start = 0
    for index, byte in enumerate(text):
        if byte != ord("\n"):
            continue
        break_start = index - 1 if index > line_start and text[index - 1] == ord("\r") else index
        line = text[line_start:break_start]
        if (
            len(line) >= WRAPPED_LINE
            and all(char in either for char in line)
            and index + 1 < len(text)
            and text[index + 1] in either
        ):
            dropped.update(range(break_start, index + 1))
        line_start = index + 1
    origin = [index for index in range(len(text)) if index not in dropped]
    return bytes(text[index] for index in origin), origin


def spans_in(text: bytes, texts: set[tuple[str, str]]) -> list[tuple[int, int]]:
    """Every span of `text` to mask for `texts` ((text, kind) pairs), in positions of `text`."""
    chars = text.decode("utf-8", "surrogateescape")
    char_at_byte: dict[int, int] = {}
    offset = 0
    for number, char in enumerate(chars):
        char_at_byte[offset] = number
        offset += 1 if "\udc80" <= char <= "\udcff" else len(char.encode())
    char_at_byte[offset] = len(chars)
    unwrapped, kept = unwrap(text)

    spans = []
    for variant, kind in texts:
        pattern = _regex_for(raw(variant))
        # Base64 variants are found and extended in the text with its joining
        # line breaks removed, so that they span them.
        searched = unwrapped if kind in ("standard", "url") else text
        position = 0
        while True:
            match = pattern.search(searched, position)
            if match is None:
                break
            start, end = match.span()
            position = start + 1
            if kind == "word":
                before = chars[char_at_byte[start] - 1] if start > 0 else None
                after = chars[char_at_byte[end]] if end < len(text) else None
                if _is_word(before) or _is_word(after):
                    continue
                spans.append((start, end))
            elif kind in ("standard", "url"):
                alphabet = STANDARD_ALPHABET if kind == "standard" else URL_ALPHABET
                while start > 0 and searched[start - 1] in alphabet:
                    start -= 1
                # The run is base64 characters followed by "=" padding.
                while end < len(searched) and searched[end] in alphabet and searched[end - 1] != ord("="):
                    end += 1
                while end < len(searched) and searched[end] == ord("="):
                    end += 1
                spans.append((kept[start], kept[end - 1] + 1))
            else:
                spans.append((start, end))
    return spans


def reference_mask(
    values: Iterable[str], data: bytes, placeholder: bytes = PLACEHOLDER, variants: bool = True
) -> bytes:
    texts = set(texts_for(values, variants))
    view, origin = strip_escapes(data)
    spans = [(origin[start], origin[end - 1] + 1) for start, end in spans_in(view, texts)]
    spans += spans_in(data, texts)

    # Two spans share a placeholder when they overlap or touch, or when only
    # bytes of escape sequences lie between them.
    outside = set(origin)

    def only_escapes_between(end: int, start: int) -> bool:
        return not any(index in outside for index in range(end, start))

    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and (start <= merged[-1][1] or only_escapes_between(merged[-1][1], start)):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    out = b""
    position = 0
    for start, end in merged:
        out += data[position:start] + placeholder
        position = end
    return out + data[position:]
