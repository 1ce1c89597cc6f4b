"""A bash parse of a command (tree-sitter-bash): its parameter expansions and programs.

Only real expansions count: ``$NAME`` and ``${NAME…}`` outside single quotes,
comments and here-documents with a quoted delimiter.  The string argument of
``bash -c`` / ``sh -c`` is parsed as well, as the shell would run it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

__all__ = ["ParsedCommand", "expanded_names", "parse_command"]

_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh"})
#: Nesting depth of ``bash -c`` strings that are parsed; deeper ones are not.
_MAX_DEPTH = 4


@dataclass
class ParsedCommand:
    names: set[str] = field(default_factory=set)
    programs: set[str] = field(default_factory=set)


@functools.cache
def _parser():  # type: ignore[no-untyped-def]
    import tree_sitter_bash
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_bash.language()))


def parse_command(command: str) -> ParsedCommand:
    """Return the expanded variable names and the programs a command runs."""
    parsed = ParsedCommand()
    _collect(command.encode("utf-8", "surrogatepass"), parsed, 0)
    return parsed


def expanded_names(command: str) -> set[str]:
    return parse_command(command).names


def _collect(source: bytes, parsed: ParsedCommand, depth: int) -> None:
    tree = _parser().parse(source)
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in ("simple_expansion", "expansion"):
            for child in node.children:
                if child.type == "variable_name" and child.text is not None:
                    parsed.names.add(child.text.decode("utf-8", "replace"))
        elif node.type == "command":
            _command(node, parsed, depth)
        stack.extend(node.children)


def _command(node, parsed: ParsedCommand, depth: int) -> None:  # type: ignore[no-untyped-def]
    name_node = node.child_by_field_name("name")
    if name_node is None or name_node.text is None:
        return
    program = os.path.basename(name_node.text.decode("utf-8", "replace"))
    parsed.programs.add(program)
    if program not in _SHELLS or depth >= _MAX_DEPTH:
        return
    arguments = node.children_by_field_name("argument")
    for index, argument in enumerate(arguments[:-1]):
        text = (argument.text or b"").decode("utf-8", "replace")
        if text.startswith("-") and not text.startswith("--") and "c" in text:
            script = _unquote(arguments[index + 1])
            if script is not None:
                _collect(script, parsed, depth + 1)
            return


def _unquote(node) -> bytes | None:  # type: ignore[no-untyped-def]
    text: bytes = node.text or b""
    if node.type == "raw_string":
        return text[1:-1]
    if node.type == "string":
        return text[1:-1].replace(b"\\$", b"$").replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    if node.type == "word":
        return text
    return None
