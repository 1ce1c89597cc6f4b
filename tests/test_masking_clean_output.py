"""No false positives: real tool output without secrets comes back byte-for-byte unchanged.

The files under data/clean/ are real output captured on a Debian machine
(see data/clean/README.md). The test registers 300 random values shaped
like real API keys, passwords and short user names. None of them occurs in
the files, so masking must change nothing, one-shot or streamed.
"""

from __future__ import annotations

import base64
import random
import string
from pathlib import Path

import pytest

from secretd.daemon.masking import Masker, MaskStream

CLEAN = Path(__file__).parent / "data" / "clean"
FILES = sorted(path for path in CLEAN.iterdir() if path.name != "README.md")

ALPHANUMERIC = string.ascii_letters + string.digits


def random_values(seed: int) -> list[str]:
    """300 random values in the shapes secrets have in practice."""
    rng = random.Random(seed)

    def pick(alphabet: str, length: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    shapes = [
        lambda: "ghp_" + pick(ALPHANUMERIC, 36),
        lambda: "github_pat_" + pick(ALPHANUMERIC + "_", 70),
        lambda: "sk-" + pick(ALPHANUMERIC, 48),
        lambda: "sk-proj-" + pick(ALPHANUMERIC + "-_", 64),
        lambda: "AKIA" + pick(string.ascii_uppercase + string.digits, 16),
        lambda: pick(ALPHANUMERIC + "+/", 40),
        lambda: "xoxb-" + "-".join(pick(string.digits, 12) for _ in range(2)) + "-" + pick(ALPHANUMERIC, 24),
        lambda: pick(string.hexdigits.lower()[:16], 40),
        lambda: "eyJhbGciOiJIUzI1NiJ9." + pick(ALPHANUMERIC + "-_", 40) + "." + pick(ALPHANUMERIC + "-_", 43),
        lambda: pick(ALPHANUMERIC + "!@#$%^&*()-_=+[]{};:,.<>?", rng.randint(12, 24)),
        lambda: pick(ALPHANUMERIC, rng.randint(8, 11)),
        lambda: pick(string.ascii_lowercase, 2) + pick(ALPHANUMERIC, rng.randint(4, 5)),
    ]
    return [rng.choice(shapes)() for _ in range(300)]


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker.build(random_values(20240501))


def test_clean_corpus_is_real() -> None:
    assert len(FILES) >= 10
    assert sum(path.stat().st_size for path in FILES) > 300_000
    assert any(b"\x1b[" in path.read_bytes() for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_clean_output_unchanged_one_shot(masker: Masker, path: Path) -> None:
    data = path.read_bytes()
    assert masker.mask(data) == data


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_clean_output_unchanged_streamed(masker: Masker, path: Path) -> None:
    data = path.read_bytes()
    rng = random.Random(path.name)
    stream = MaskStream()
    released = []
    position = 0
    while position < len(data):
        size = rng.choice([1, 7, 512, 4096, 8192])
        released.append(stream.feed(masker, data[position : position + size]))
        position += size
    released.append(stream.flush(masker))
    assert b"".join(released) == data


def test_clean_corpus_masks_planted_wrapped_base64(masker: Masker) -> None:
    # Guards the wrapped base64 files above the same way: a value in them is found.
    values = random_values(20240501)
    data = (CLEAN / "base64_usr_bin_true.txt").read_bytes()
    lines = data.splitlines(keepends=True)
    blob = base64.b64encode(b"\x7fELF" + values[0].encode() + b"\x00" * 40)
    planted = b"".join(lines[:10]) + b"".join(blob[start : start + 76] + b"\n" for start in range(0, len(blob), 76))
    out = masker.mask(planted + b"$ ")
    assert out == b"<secret-hidden>\n$ "


def test_clean_corpus_masks_planted_values(masker: Masker) -> None:
    # Guards the two tests above against a masker that masks nothing.
    values = random_values(20240501)
    data = (CLEAN / "pip_list.txt").read_bytes()
    planted = data + b"token=" + values[0].encode() + b"\n" + values[-1].encode() + b"\n"
    out = masker.mask(planted)
    assert out.startswith(data)
    assert values[0].encode() not in out
    assert values[-1].encode() not in out
