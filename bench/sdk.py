"""The OpenHands SDK's masking, set up as a conversation uses it.

`SecretRegistry.mask_secrets_in_output` replaces each value it has resolved
with `str.replace`, one value after another; `compile_stream_mask` builds a
regex alternation of those values for streamed text. Both work on `str`,
so the runners decode the input before timing starts.
"""

from __future__ import annotations

import codecs
import os
import re
import time
from collections.abc import Callable
from typing import Any

__all__ = ["load_registry", "oneshot_run", "sdk_version", "stream_compile_seconds", "stream_run", "text_chunks"]


def _import_registry_class() -> Any:
    # Importing openhands.sdk loads litellm, which would otherwise try to
    # download its model price list from GitHub; the benchmark sends nothing
    # over the network.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
    from openhands.sdk.conversation.secret_registry import SecretRegistry

    return SecretRegistry


def sdk_version() -> str:
    from importlib.metadata import version

    return version("openhands-sdk")


def load_registry(values: list[str]) -> Any:
    """Return a `SecretRegistry` holding `values` with every value in its masking set.

    `update_secrets` only stores sources. A value joins the masking set
    once the SDK resolves it, and `get_all_secrets_as_env_vars` resolves
    every name. The first `mask_secrets_in_output` call would do the same,
    so resolving them here keeps that work out of the timed runs.
    """
    registry = _import_registry_class()()
    registry.update_secrets({f"BENCH_SECRET_{index:06d}": value for index, value in enumerate(values)})
    resolved = registry.get_all_secrets_as_env_vars()
    if len(resolved) != len(values):
        raise RuntimeError(f"the SDK resolved {len(resolved)} of {len(values)} secrets")
    return registry


def text_chunks(data: bytes, chunk_bytes: int) -> list[str]:
    """Decode `data` in pieces of `chunk_bytes` bytes, as a stream reader would.

    A UTF-8 character cut by a piece boundary goes with the next piece.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces = [decoder.decode(data[offset : offset + chunk_bytes]) for offset in range(0, len(data), chunk_bytes)]
    tail = decoder.decode(b"", final=True)
    if tail:
        pieces.append(tail)
    return pieces


def oneshot_run(registry: Any, data: bytes) -> Callable[[], str]:
    """Mask `data` (decoded before timing) with `mask_secrets_in_output`."""
    text = data.decode()
    return lambda: registry.mask_secrets_in_output(text)


def stream_run(registry: Any, data: bytes, chunk_bytes: int) -> Callable[[], str]:
    """Feed `data` in pieces of `chunk_bytes` bytes to `compile_stream_mask()` and flush it.

    Each run compiles its stream masker, as each streamed response does;
    after the first run Python's `re` cache returns the compiled pattern.
    """
    pieces = text_chunks(data, chunk_bytes)

    def run() -> str:
        stream = registry.compile_stream_mask()
        out = [stream.feed(piece) for piece in pieces]
        out.append(stream.flush())
        return "".join(out)

    return run


def stream_compile_seconds(registry: Any) -> float:
    """Time one `compile_stream_mask()` call with Python's regex cache emptied first."""
    re.purge()
    start = time.perf_counter()
    registry.compile_stream_mask()
    return time.perf_counter() - start
