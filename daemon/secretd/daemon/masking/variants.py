"""The texts that count as a secret value in output: its forms and their encodings."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

from .escapes import View
from .policy import MIN_ANYWHERE_CHARS, WHITESPACE, value_tier

__all__ = ["ANYWHERE", "BASE64_STD", "BASE64_URL", "WORD", "encode_text", "expand_value", "value_forms"]

# Match kinds, combined as bit flags when several variants share one text.
ANYWHERE = 1  # masked wherever it occurs
WORD = 2  # masked only where both neighbouring characters are not word characters
BASE64_STD = 4  # masked with the run of standard base64 characters around it
BASE64_URL = 8  # the same with the URL-safe base64 alphabet

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)
# The RFC 3986 unreserved characters, which no JSON, percent or shell
# encoding below changes.
_UNENCODED = re.compile(r"[A-Za-z0-9_.~-]*")
_ANSI_C_SPECIAL = re.compile(r"[\x00-\x1f\x7f\\']")

# Inside $'...' bash 5.2 writes these characters as a backslash and a
# letter (checked with printf %q). Other control characters become octal.
_ANSI_C_LETTERS = {
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\x0b": "\\v",
    "\x0c": "\\f",
    "\r": "\\r",
    "\x1b": "\\E",
    "\\": "\\\\",
    "'": "\\'",
}


def encode_text(text: str) -> bytes:
    """Return the bytes of a value or variant as a program would write them.

    A str read from the environment or a file with undecodable bytes
    contains them as lone surrogates (U+DC80 to U+DCFF), which turn back into
    those bytes. Raises UnicodeEncodeError for any other lone surrogate.
    """
    return text.encode("utf-8", "surrogateescape")


def value_forms(value: str) -> list[str]:
    """List the forms of a value that are registered on their own.

    They are the value exactly as given, the value with surrounding
    whitespace removed, that form without one pair of matching surrounding
    quotes, and each line of a multi-line value with its own surrounding
    whitespace removed. Forms that contain terminal escape sequences are
    also listed without them. Forms are never unescaped.
    """
    trimmed = value.strip(WHITESPACE)
    forms = [value, trimmed]
    if len(trimmed) >= 2 and trimmed[0] == trimmed[-1] and trimmed[0] in "'\"":
        forms.append(trimmed[1:-1])
    if "\n" in trimmed or "\r" in trimmed:
        forms.extend(line.strip(WHITESPACE) for line in _LINE_BREAK.split(trimmed))
    # Matching skips escape sequences in the output, so a value that contains
    # some is also registered without them.
    forms += [_without_escapes(form) for form in forms if "\x1b" in form]
    return list(dict.fromkeys(forms))


def _without_escapes(form: str) -> str:
    return View(encode_text(form), final=True).data.decode("utf-8", "surrogateescape")


def expand_value(value: str, variants: bool) -> dict[str, int]:
    """Map every text to mask for `value` to its match kinds.

    A form of 4 to 7 characters (trimmed) is kept as a `WORD` text without
    variants. A form of 8 or more is an `ANYWHERE` text. When `variants` is
    true, its encodings below are added too, except those under 8
    characters.
    """
    texts: dict[str, int] = {}
    for form in value_forms(value):
        tier = value_tier(form)
        if tier == "too_short":
            continue
        if tier == "word":
            _add(texts, form, WORD)
            continue
        _add(texts, form, ANYWHERE)
        if not variants:
            continue
        for text in _encodings(form):
            if len(text) >= MIN_ANYWHERE_CHARS:
                _add(texts, text, ANYWHERE)
        for text, kind in _base64_texts(form):
            if len(text) >= MIN_ANYWHERE_CHARS:
                _add(texts, text, kind)
    return texts


def _add(texts: dict[str, int], text: str, kind: int) -> None:
    texts[text] = texts.get(text, 0) | kind


def _encodings(form: str) -> list[str]:
    """List the JSON, percent-encoded and shell-quoted texts of a form."""
    if _UNENCODED.fullmatch(form):
        return [form]  # every encoder below leaves these characters as they are
    json_ascii = json.dumps(form, ensure_ascii=True)[1:-1]
    json_utf8 = json.dumps(form, ensure_ascii=False)[1:-1]
    # Go's json.Marshal also escapes <, >, &, U+2028 and U+2029 (HTMLEscape).
    json_go = json_utf8
    for char, escape in _GO_HTML_ESCAPES.items():
        json_go = json_go.replace(char, escape)
    texts = [json_ascii, json_utf8, json_go]
    # json.dumps writes lower-case hex digits, and some other encoders upper case.
    texts += [_upper_json_hex(text) for text in texts]

    # Python's quote never escapes "_.-~", so safe="" already leaves exactly
    # the RFC 3986 unreserved characters. The other two add what
    # encodeURIComponent and quote's default leave unescaped.
    percent = [
        quote(form, safe="", errors="surrogateescape"),
        quote(form, safe="!'()*", errors="surrogateescape"),
        quote(form, safe="/", errors="surrogateescape"),
        quote_plus(form, safe="", errors="surrogateescape"),
    ]
    texts += percent
    texts += [_PERCENT_ESCAPE.sub(lambda match: match.group().lower(), text) for text in percent]

    # The bodies of bash single-quoted words: `'` closes the quote, adds the
    # quote character escaped or double-quoted, and reopens it.
    texts.append(form.replace("'", "'\\''"))
    texts.append(form.replace("'", "'\"'\"'"))
    texts.append(_ansi_c_body(form))
    return texts


def _upper_json_hex(text: str) -> str:
    def upper(match: re.Match[str]) -> str:
        escape = match.group()
        return "\\u" + escape[2:].upper() if escape.startswith("\\u") else escape

    return _JSON_ESCAPE.sub(upper, text)


def _ansi_c_body(form: str) -> str:
    """Return the text bash writes between `$'` and `'` for `form`."""
    if not _ANSI_C_SPECIAL.search(form):
        return form
    out = []
    for char in form:
        escaped = _ANSI_C_LETTERS.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " " or char == "\x7f":
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return "".join(out)


def _base64_texts(form: str) -> list[tuple[str, int]]:
    """List the base64 texts of a form, standard and URL-safe.

    The form's UTF-8 bytes are encoded with 0, 1 and 2 leading bytes dropped,
    which gives the three alignments the value can have inside a longer
    encoded blob. When the length is not a multiple of 3, the padding and
    the last character (which also depends on the byte after the value) are
    removed. The padded encoding is not registered, because it starts with
    the text kept here and a base64 match is extended over the run of base64
    characters around it.
    """
    data = encode_text(form)
    texts = []
    for dropped in range(3):
        part = data[dropped:]
        if not part:
            break
        standard = base64.b64encode(part).decode().rstrip("=")
        if len(part) % 3:
            standard = standard[:-1]
        url_safe = standard.replace("+", "-").replace("/", "_")
        if url_safe == standard:
            texts.append((standard, BASE64_STD | BASE64_URL))
        else:
            texts += [(standard, BASE64_STD), (url_safe, BASE64_URL)]
    return texts
