"""secretd as the secret registry of an OpenHands agent conversation.

``use_secretd(conversation)`` replaces the conversation's in-process
``SecretRegistry`` with ``SecretdSecretRegistry``, backed by one secretd
conversation scope.  ``SecretdTerminalTool`` (spec name
``SECRETD_TERMINAL_TOOL``) is the terminal tool with an executor that hands
secrets to the shell through a pipe instead of typing them.  Needs Python
3.12 or newer and the ``openhands`` extra: ``pip install 'secretd[openhands]'``.
docs/openhands.md lists where the behaviour differs from the SDK's, and why.
"""

import sys

if sys.version_info < (3, 12):
    raise ImportError(
        "secretd.client.openhands needs Python 3.12 or newer, as openhands-sdk does; "
        f"this is Python {sys.version_info.major}.{sys.version_info.minor}"
    )

try:
    import openhands.sdk  # noqa: F401
    import openhands.tools  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "secretd.client.openhands needs openhands-sdk and openhands-tools: "
        "pip install 'secretd[openhands]'"
    ) from exc

from ._pipe import EnvPipe, PipeDirectory
from ._registry import DEFAULT_CALLBACK_TIMEOUT, DEFAULT_LOOKUP_TTL, SecretdSecretRegistry
from ._stream import SecretdStreamMask
from ._terminal import SECRETD_TERMINAL_TOOL, SecretdTerminalExecutor, SecretdTerminalTool
from ._wiring import use_secretd

__all__ = [
    "DEFAULT_CALLBACK_TIMEOUT",
    "DEFAULT_LOOKUP_TTL",
    "SECRETD_TERMINAL_TOOL",
    "EnvPipe",
    "PipeDirectory",
    "SecretdSecretRegistry",
    "SecretdStreamMask",
    "SecretdTerminalExecutor",
    "SecretdTerminalTool",
    "use_secretd",
]
