"""Every public case, run against the real daemon through the real client.

Output cases: one-shot, fed in their recorded chunks, byte by byte, and split
at random points; chunking must never change the result.  Command cases:
the exact set of names (and their values) that env resolution returns.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from secretd.client import Client, SecretSpec, StaticSource

from .conftest import load_cases

ALL_CASES = load_cases()
OUTPUT_CASES = [c for c in ALL_CASES if c["input_kind"] == "output"]
COMMAND_CASES = [c for c in ALL_CASES if c["input_kind"] == "command"]


def _register(client: Client, case: dict[str, Any]) -> str:
    scope = client.open_scope(case["id"], mode=case.get("mode"))
    for name, values in case.get("previous_values", {}).items():
        for value in values:
            client.update_secrets(scope, [SecretSpec(name=name, source=StaticSource(value=value))])
    specs = [SecretSpec(name=n, source=StaticSource(value=v)) for n, v in case["secrets"].items()]
    client.update_secrets(scope, specs)
    return scope


def _stream(client: Client, scope: str, pieces: list[bytes]) -> Iterator[bytes]:
    with client.stream(scope) as stream:
        for piece in pieces:
            yield stream.feed(piece)
        yield stream.close()


def _random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 8))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[c["id"] for c in OUTPUT_CASES])
def test_output_case(client: Client, case: dict[str, Any]) -> None:
    scope = _register(client, case)
    data = case["input"].encode()
    expected = case["expected"].encode()

    assert client.mask(scope, data) == expected

    if "chunks" in case:
        chunks = [c.encode() for c in case["chunks"]]
        released = b""
        minimums = case.get("min_emitted_after_each_chunk", [])
        with client.stream(scope) as stream:
            for index, chunk in enumerate(chunks):
                released += stream.feed(chunk)
                if index < len(minimums):
                    assert released.startswith(minimums[index].encode()), f"after chunk {index}: {released!r}"
            released += stream.close()
        assert released == expected

    byte_by_byte = b"".join(_stream(client, scope, [data[i : i + 1] for i in range(len(data))]))
    assert byte_by_byte == expected

    for seed in range(5):
        split = b"".join(_stream(client, scope, _random_splits(data, seed)))
        assert split == expected, f"random split with seed {seed}"


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c["id"] for c in COMMAND_CASES])
def test_command_case(client: Client, case: dict[str, Any]) -> None:
    scope = _register(client, case)
    result = client.resolve_env(scope, case["input"])
    assert sorted(result.env) == sorted(case["expected_env_names"])
    for name, value in result.env.items():
        assert value == case["secrets"][name]
    assert result.errors == {}
