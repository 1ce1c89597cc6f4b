"""Errors raised inside the daemon and turned into msgpack-rpc error responses."""

from __future__ import annotations

import ast
import difflib
import re
import types
import typing
from typing import Annotated, Any, Literal, Union

import msgspec

from secretd.protocol.errors import ErrorCode
from secretd.protocol.messages import Name
from secretd.protocol.sources import Source

__all__ = ["RpcError", "SourceFailed", "safe_validation_message"]

_MISSING: Any = object()

# msgspec ends a message with the path of the offending input: " - at `$.a[0]`",
# or " - at `key` in `$.a`" when a dict key is invalid.
_PATH_SUFFIX = re.compile(r" - at `(?:(?P<key>key)` in `)?(?P<path>\$[^`]*)`\Z")
_PATH_SEGMENT = re.compile(r"\.(?P<field>[^.\[]+)|\[(?P<index>\d+)\]|(?P<dict>\[\.\.\.\])")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>.*)`\Z", re.DOTALL)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>.*)`\Z", re.DOTALL)
_INVALID_VALUE = re.compile(r"Invalid (?:enum )?value (?P<value>.*)\Z", re.DOTALL)
_REGEX = re.compile(r"Expected `str` matching regex (?P<pattern>.*)\Z", re.DOTALL)
_QUOTED = re.compile(r"'[^']*'")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Input in a key or keyword position (a field name, an enum value, a source kind)
# is quoted only when it is a near miss of an allowed value or has the shape of
# the protocol's own keywords: letters, "_" and "-", no digits, at most 32
# characters.  A client may have put a value there, and tokens, keys and most
# passwords contain digits or are longer.
_KEYWORD_SHAPE = re.compile(r"[A-Za-z][A-Za-z_-]{0,31}")
_NOT_SHOWN = "(not shown, because it could be a secret value)"
#: Longer input is never quoted, not even a TOML key.
_MAX_SHOWN = 64


def safe_validation_message(
    exc: msgspec.ValidationError,
    *,
    root_type: Any = None,
    data: Any = _MISSING,
    show_keys: bool = False,
    strict: bool = True,
) -> str:
    """Describe a msgspec validation error as ``PATH: problem`` without quoting a possible value.

    The message keeps what is not secret: the path, field names, the allowed
    enum values and source kinds, types and regex patterns.  Input where free
    text is expected (a static source's ``value``, a URL, a header value, an
    argv) is never quoted.  Input that should be a field name, a secret name,
    an enum value or a source kind is quoted when it has the shape of a
    keyword or is close to an allowed value.  ``show_keys`` quotes every key,
    for a TOML file, where keys and values are written apart.

    With ``root_type`` (the type that was decoded) the message lists the
    allowed fields, values and kinds.  With ``data`` (the same input, decoded
    without a type) the path names the dict entry, such as
    ``$.secrets.GITHUB_TOKEN.source`` in place of msgspec's
    ``$.secrets[...].source``, and names an invalid key.  ``strict`` must be
    the value the input was converted with.
    """
    text = str(exc)
    suffix = _PATH_SUFFIX.search(text)
    problem = text[: suffix.start()] if suffix else text
    path_text = suffix.group("path") if suffix else "$"
    at_key = bool(suffix and suffix.group("key"))
    where = _locate(root_type, data, path_text, show_keys=show_keys, strict=strict)

    if at_key:
        return _describe_bad_key(problem, where, show_keys=show_keys, strict=strict)
    if match := _UNKNOWN_FIELD.match(problem):
        return _describe_unknown_field(match.group("name"), where, show_keys=show_keys)
    if match := _MISSING_FIELD.match(problem):
        return f"{where.path}: missing required field {match.group('name')!r}"
    if match := _INVALID_VALUE.match(problem):
        return _describe_invalid_value(match.group("value"), where)
    if match := _REGEX.match(problem):
        return _describe_regex_mismatch(match.group("pattern"), where)
    # Every other msgspec message names only types and limits.  Quoted text is
    # removed anyway, in case another msgspec version quotes the input there.
    return f"{where.path}: {_lower_first(_QUOTED.sub('(not shown)', problem))}"


class RpcError(Exception):
    """A request failed with a stable code and a message safe to send to the peer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SourceFailed(Exception):
    """A source could not produce a value; ``reason`` never contains a value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Location(msgspec.Struct):
    """The place a msgspec error path leads to: the path to show, and the type and input there."""

    path: str
    #: The type there, with ``Annotated`` and the decoded union member resolved.
    type: Any = None
    data: Any = _MISSING
    #: The type there as declared, so that ``Name`` can be recognised.
    annotation: Any = None
    #: Struct types of a tagged union, when the path ends at its tag field (``kind``).
    tagged: tuple[type[msgspec.Struct], ...] = ()


def _locate(root_type: Any, data: Any, path_text: str, *, show_keys: bool, strict: bool) -> _Location:
    """Follow msgspec's path through ``root_type`` and ``data``, naming dict entries on the way."""
    if root_type is None:
        return _Location(path_text)
    display_path = "$"
    current: Any = root_type
    for segment in _PATH_SEGMENT.finditer(path_text, 1):
        current = _pick_union_member(_unwrap(current), data)
        if segment.group("field") is not None:
            name = segment.group("field")
            display_path += f".{name}"
            tagged = _tagged_structs(current)
            if tagged and name == tagged[0].__struct_config__.tag_field:
                return _Location(display_path, tagged=tagged)
            current = _field_type(current, name)
            data = data.get(name, _MISSING) if isinstance(data, dict) else _MISSING
        elif segment.group("index") is not None:
            index = int(segment.group("index"))
            display_path += f"[{index}]"
            current = _item_type(current, index)
            data = data[index] if isinstance(data, list) and index < len(data) else _MISSING
        else:
            key = _first_failing_entry(current, data, strict=strict)
            if key is _MISSING or not (show_keys or _KEYWORD_SHAPE.fullmatch(key)):
                display_path += "[...]"
            else:
                display_path += f".{key}" if _IDENTIFIER.fullmatch(key) else f"[{key!r}]"
            data = _MISSING if key is _MISSING else data[key]
            current = _dict_types(current)[1]
        if current is None:
            return _Location(display_path + path_text[segment.end():])
    return _Location(display_path, _pick_union_member(_unwrap(current), data), data, current)


def _unwrap(annotation: Any) -> Any:
    """Return the type inside ``Annotated[...]``."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return tuple(_unwrap(member) for member in typing.get_args(annotation) if member is not type(None))
    return ()


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _tagged_structs(annotation: Any) -> tuple[type[msgspec.Struct], ...]:
    members = _union_members(annotation)
    if members and all(_is_struct(member) and member.__struct_config__.tag_field for member in members):
        return members
    return ()


def _pick_union_member(annotation: Any, data: Any) -> Any:
    """Return the member of a union that ``data`` was decoded as, or the union when that is unclear."""
    members = _union_members(annotation)
    if not members:
        return annotation
    if len(members) == 1:
        return members[0]
    tagged = _tagged_structs(annotation)
    if tagged and isinstance(data, dict):
        tag = data.get(tagged[0].__struct_config__.tag_field)
        for member in tagged:
            if member.__struct_config__.tag == tag:
                return member
    return annotation


def _field_type(annotation: Any, name: str) -> Any:
    if _is_struct(annotation):
        for field in msgspec.structs.fields(annotation):
            if field.encode_name == name:
                return field.type
    return None


def _item_type(annotation: Any, index: int) -> Any:
    if _is_struct(annotation) and annotation.__struct_config__.array_like:
        fields = msgspec.structs.fields(annotation)
        return fields[index].type if index < len(fields) else None
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        return typing.get_args(annotation)[0]
    return None


def _dict_types(annotation: Any) -> tuple[Any, Any]:
    if typing.get_origin(annotation) is dict:
        key_type, value_type = typing.get_args(annotation)
        return key_type, value_type
    return None, None


def _converts(value: Any, annotation: Any, *, strict: bool) -> bool:
    try:
        msgspec.convert(value, annotation, strict=strict)
    except msgspec.ValidationError:
        return False
    return True


def _first_failing_entry(annotation: Any, data: Any, *, strict: bool) -> Any:
    """Return the first key of ``data`` whose value does not convert, as msgspec reports the first error."""
    value_type = _dict_types(annotation)[1]
    if value_type is None or not isinstance(data, dict):
        return _MISSING
    for key, value in data.items():
        if isinstance(key, str) and not _converts(value, value_type, strict=strict):
            return key
    return _MISSING


def _show(text: str, allowed: typing.Iterable[str] = (), *, show: bool = False) -> str:
    """Quote ``text`` when it is safe to show: a key of a TOML file, a keyword, or a near miss of one."""
    if len(text) > _MAX_SHOWN:
        return f"({len(text)} characters, not shown)"
    if show or _KEYWORD_SHAPE.fullmatch(text) or difflib.get_close_matches(text, list(allowed), n=1, cutoff=0.8):
        return repr(text)
    return _NOT_SHOWN


def _suggestion(text: str, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(text, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unquote(quoted: str) -> str:
    try:
        text = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return quoted
    return text if isinstance(text, str) else quoted


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _describe_unknown_field(name: str, where: _Location, *, show_keys: bool) -> str:
    if not _is_struct(where.type):
        return f"{where.path}: unknown field {_show(name, show=show_keys)}"
    fields = [field.encode_name for field in msgspec.structs.fields(where.type)]
    shown = _show(name, fields, show=show_keys)
    hint = _suggestion(name, fields) if shown != _NOT_SHOWN else ""
    return f"{where.path}: unknown field {shown}{hint}; valid fields: {', '.join(fields)}"


def _describe_invalid_value(quoted: str, where: _Location) -> str:
    try:
        value = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        value = None
    text = value if isinstance(value, str) else None  # None: not shown
    if where.tagged:
        kinds = sorted(str(member.__struct_config__.tag) for member in where.tagged)
        subject = "source kind" if set(where.tagged) == set(_union_members(Source)) else where.path.rsplit(".", 1)[-1]
        shown = _NOT_SHOWN if text is None else _show(text, kinds)
        return f"{where.path}: unknown {subject} {shown}; expected one of {', '.join(kinds)}"
    if typing.get_origin(where.type) is Literal:
        allowed = [str(option) for option in typing.get_args(where.type)]
        shown = _NOT_SHOWN if text is None else _show(text, allowed)
        return f"{where.path}: invalid value {shown}; expected one of {', '.join(map(repr, allowed))}"
    shown = _NOT_SHOWN if text is None else _show(text)
    return f"{where.path}: invalid value {shown}"


def _describe_regex_mismatch(quoted_pattern: str, where: _Location) -> str:
    pattern = _unquote(quoted_pattern)  # from the type, not from the input
    shown = f" {_show(where.data)}" if isinstance(where.data, str) else ""
    if where.annotation == Name:
        return f"{where.path}: invalid secret name{shown}; a name must match {pattern}"
    return f"{where.path}: invalid string{shown}; expected one matching {pattern}"


def _describe_bad_key(problem: str, where: _Location, *, show_keys: bool, strict: bool) -> str:
    key_type = _dict_types(where.type)[0] if where.type is not None else None
    bad = _MISSING
    if key_type is not None and isinstance(where.data, dict):
        bad = next((key for key in where.data if not _converts(key, key_type, strict=strict)), _MISSING)
    subject = "secret name" if key_type == Name else "key"
    if not isinstance(bad, str):
        shown = ""
    elif len(bad) > _MAX_SHOWN:
        shown = f" of {len(bad)} characters"
    else:
        shown = f" {_show(bad, show=show_keys)}"
    if match := _REGEX.match(problem):
        pattern = _unquote(match.group("pattern"))
        requirement = f"a name must match {pattern}" if key_type == Name else f"expected one matching {pattern}"
    else:
        requirement = _lower_first(_QUOTED.sub("(not shown)", problem))
    return f"{where.path}: invalid {subject}{shown}; {requirement}"
