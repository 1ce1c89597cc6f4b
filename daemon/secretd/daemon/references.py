"""Which registered names a shell command references.

``word``: a name counts where it stands as a whole identifier, case-sensitive
(``$NAME``, ``${NAME:-x}``, ``-e NAME``, ``os.environ["NAME"]``; not
``$MY_NAME``, ``NAME_2`` or ``$name``).  ``substring``: the OpenHands SDK's
rule, a case-insensitive substring test, kept for parity.  ``shell``: only
real parameter expansions of a bash parse (see ``shell.py``).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from secretd.protocol.messages import ReferenceMode

__all__ = ["referenced_names"]

_WORD = re.compile(r"[A-Za-z0-9_]+")


def referenced_names(command: str, names: Collection[str], mode: ReferenceMode) -> set[str]:
    """Return the members of ``names`` that ``command`` references in ``mode``."""
    if mode == "word":
        return set(_WORD.findall(command)).intersection(names)
    if mode == "substring":
        lowered = command.lower()
        return {name for name in names if name.lower() in lowered}
    from .shell import expanded_names

    return expanded_names(command).intersection(names)
