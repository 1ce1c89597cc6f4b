"""Realistic tool output with secrets embedded at a known rate, deterministic from a seed.

The output mixes what a coding agent's tools print: pytest and build logs
with ANSI colour codes, `pip list`, `git log`, pretty-printed JSON from an
API client, and npm-style lines with non-ASCII symbols. Secret occurrences
are spread evenly over it. Three in four are placed where values leak as
they are (a shell trace, `curl -v` headers, a git remote URL, an
environment dump, JSON). Every fourth encodes or splits the value: inside
HTTP Basic credentials (base64), percent-encoded in a query string, or
split by the colour codes of `grep --color`. The counts in `Workload`
follow the resulting text, because JSON escaping can change a value and
percent-encoding can leave one unchanged.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["MIB", "Workload", "build_output", "secret_values"]

MIB = 1 << 20

_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"
_BASE64 = _ALNUM + "+/"
_URL_SAFE = _ALNUM + "-_"
# Punctuation of generated passwords: quotes and backslashes too, so that
# JSON, shell and percent encodings differ from the value.
_PUNCTUATION = "!#$%&()*+,-./:;<=>?@[]^_{|}~'\"\\"

_GREEN = "\x1b[32m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_BOLD_GREEN = "\x1b[1m\x1b[32m"
_BOLD = "\x1b[1m"
_RESET = "\x1b[0m"
_GREP_MATCH = "\x1b[01;31m\x1b[K"
_GREP_END = "\x1b[m\x1b[K"

_WORDS = (
    "account", "adapter", "api", "auth", "backend", "batch", "buffer", "cache", "client", "config",
    "connection", "context", "database", "decoder", "deploy", "event", "export", "fetch", "handler",
    "index", "invoice", "job", "loader", "metrics", "migration", "model", "parser", "payment", "pool",
    "queue", "render", "report", "request", "retry", "router", "scheduler", "schema", "search",
    "session", "storage", "stream", "task", "token", "upload", "user", "validator", "worker",
)
_PACKAGES = (
    "aiohttp", "anyio", "attrs", "boto3", "certifi", "charset-normalizer", "click", "cryptography",
    "Django", "fastapi", "httpx", "idna", "Jinja2", "msgpack", "numpy", "packaging", "pandas",
    "pydantic", "pydantic-core", "pytest", "python-dateutil", "PyYAML", "requests", "rich", "six",
    "SQLAlchemy", "starlette", "structlog", "typing-extensions", "urllib3", "uvicorn", "wheel",
)
_CRATES = ("serde", "serde_json", "tokio", "hyper", "regex", "clap", "anyhow", "tracing", "bytes", "rand")
_AUTHORS = ("Ada Lovelace", "Grace Hopper", "Linus Torvalds", "Barbara Liskov", "Ken Thompson", "Radia Perlman")
_VERBS = ("Fix", "Add", "Remove", "Refactor", "Update", "Handle", "Document", "Speed up", "Test")


def secret_values(count: int, seed: int) -> list[str]:
    """Generate `count` distinct secret values in common token formats.

    The formats rotate by index: GitHub tokens, OpenAI-style keys, AWS secret
    keys, Slack tokens, passwords with punctuation, hex API keys and JWTs.
    Every value has at least 16 characters and no whitespace.
    """
    rng = random.Random(seed)
    values: list[str] = []
    seen: set[str] = set()
    while len(values) < count:
        value = _FORMATS[len(values) % len(_FORMATS)](rng)
        if value not in seen:
            seen.add(value)
            values.append(value)
    return values


def _pick(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _github_token(rng: random.Random) -> str:
    return "ghp_" + _pick(rng, _ALNUM, 36)


def _openai_key(rng: random.Random) -> str:
    return "sk-proj-" + _pick(rng, _URL_SAFE, 48)


def _aws_secret(rng: random.Random) -> str:
    return _pick(rng, _BASE64, 40)


def _slack_token(rng: random.Random) -> str:
    return f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-{_pick(rng, _ALNUM, 24)}"


def _password(rng: random.Random) -> str:
    return _pick(rng, _ALNUM + _PUNCTUATION, rng.randrange(16, 25))


def _hex_key(rng: random.Random) -> str:
    return _pick(rng, _HEX, 32)


def _jwt(rng: random.Random) -> str:
    header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    return f"{header}.{_pick(rng, _URL_SAFE, rng.randrange(60, 120))}.{_pick(rng, _URL_SAFE, 43)}"


_FORMATS: tuple[Callable[[random.Random], str], ...] = (
    _github_token, _openai_key, _aws_secret, _slack_token, _password, _hex_key, _jwt,
)


@dataclass(frozen=True)
class Workload:
    """Generated output and what was embedded in it.

    `plain_occurrences` counts the places where a value appears as it is.
    `hidden_forms` are the embedded texts that contain a value only encoded
    or split by escape sequences; an exact-value masker leaves them.
    """

    data: bytes
    embedded_values: tuple[str, ...]
    plain_occurrences: int
    hidden_forms: tuple[bytes, ...]


def build_output(size: int, values: list[str], *, seed: int, secrets_per_mib: float) -> Workload:
    """Generate exactly `size` bytes of UTF-8 tool output.

    Secret occurrences, each one of `values` picked at random, are spaced
    evenly at `secrets_per_mib` per MiB (rounded to a whole number).
    """
    rng = random.Random(seed)
    occurrences = round(secrets_per_mib * size / MIB)
    spacing = size / occurrences if occurrences else float("inf")
    next_secret_at = spacing / 2

    blocks: list[bytes] = []
    length = 0
    plain = 0
    hidden: list[bytes] = []
    emitted = 0
    while True:
        if emitted < occurrences and length >= next_secret_at:
            value = rng.choice(values)
            if emitted % 4 == 3:
                text, form = _hidden_occurrence(rng, value)
            else:
                text = _plain_occurrence(rng, value)
                # JSON escaping may change the value; an exact-value masker misses that form.
                form = json.dumps(value)[1:-1]
            if value in text:
                plain += text.count(value)
            else:
                hidden.append(form.encode())
            block = text.encode()
            emitted += 1
            next_secret_at += spacing
        else:
            block = rng.choice(_FILLERS)(rng).encode()
        if length + len(block) > size:
            break
        blocks.append(block)
        length += len(block)

    blocks.append(_padding(size - length))
    data = b"".join(blocks)
    assert len(data) == size
    return Workload(data, tuple(values), plain, tuple(hidden))


def _padding(count: int) -> bytes:
    """Return `count` bytes of separator lines, 80 bytes each but the last."""
    full, rest = divmod(count, 80)
    lines = b"-" * 79 + b"\n"
    tail = b"-" * (rest - 1) + b"\n" if rest else b""
    return lines * full + tail


def _plain_occurrence(rng: random.Random, value: str) -> str:
    """Return a few lines that show `value` as it is (or JSON-escaped)."""
    host = rng.choice(("api.example.com", "registry.internal", "ci.example.org"))
    repo = f"acme/{rng.choice(_WORDS)}-{rng.choice(_WORDS)}"
    choices = (
        f"+ export API_TOKEN={value}\n+ ./scripts/deploy.sh --env staging\n",
        f"> GET /v1/{rng.choice(_WORDS)}s HTTP/1.1\n> Host: {host}\n> Authorization: Bearer {value}\n"
        f"> Accept: application/json\n>\n< HTTP/1.1 200 OK\n",
        f"origin\thttps://x-access-token:{value}@github.com/{repo}.git (fetch)\n"
        f"origin\thttps://x-access-token:{value}@github.com/{repo}.git (push)\n",
        f"HOME=/home/dev\nAWS_SECRET_ACCESS_KEY={value}\nAWS_DEFAULT_REGION=eu-west-1\n",
        f'  "credentials": {{\n    "token": {json.dumps(value)},\n    "expires_in": 3600\n  }},\n',
        f"{_timestamp(rng)} DEBUG {rng.choice(_WORDS)}.client: connecting to https://{host} "
        f"with api_key={value}\n",
    )
    return rng.choice(choices)


def _hidden_occurrence(rng: random.Random, value: str) -> tuple[str, str]:
    """Return lines that show `value` only in an encoded or split form, and that form."""
    kind = rng.randrange(3)
    if kind == 0:
        form = base64.b64encode(f"x-access-token:{value}".encode()).decode()
        return f"> Authorization: Basic {form}\n> User-Agent: git/2.39.2\n", form
    if kind == 1:
        # Percent-encoding leaves a value without reserved characters as it
        # is; the caller then counts a plain occurrence.
        form = quote(value, safe="")
        return f"{_timestamp(rng)} INFO GET /v1/search?q=logs&access_token={form} 200 12ms\n", form
    split = rng.randrange(4, 8)
    form = f"{_GREP_MATCH}{value[:split]}{_GREP_END}{value[split:]}"
    return f".env:{rng.randrange(1, 40)}:API_TOKEN={form}\n", form


def _timestamp(rng: random.Random) -> str:
    return (f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z")


def _identifier(rng: random.Random) -> str:
    return "_".join(rng.sample(_WORDS, rng.randrange(1, 4)))


def _pytest_block(rng: random.Random) -> str:
    module = rng.choice(_WORDS)
    lines = []
    for _ in range(rng.randrange(10, 40)):
        percent = rng.randrange(100)
        status = f"{_GREEN}PASSED{_RESET}"
        if rng.random() < 0.05:
            status = f"{_RED}FAILED{_RESET}"
        elif rng.random() < 0.05:
            status = f"{_YELLOW}SKIPPED{_RESET}"
        test = f"tests/test_{module}.py::test_{_identifier(rng)}"
        lines.append(f"{test} {status}{' ' * max(1, 70 - len(test))}[{percent:3d}%]")
    if rng.random() < 0.2:
        lines += [
            f"{_RED}{_BOLD}___________ test_{_identifier(rng)} ___________{_RESET}",
            f"    def test_{_identifier(rng)}(client):",
            f"        response = client.get('/{module}s/{rng.randrange(1000)}')",
            f">       assert response.status_code == 200",
            f"{_RED}E       assert 404 == 200{_RESET}",
            f"{_RED}E        +  where 404 = <Response [404]>.status_code{_RESET}",
        ]
    return "\n".join(lines) + "\n"


def _build_block(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randrange(10, 40)):
        kind = rng.randrange(4)
        name = _identifier(rng)
        if kind == 0:
            lines.append(f"[{rng.randrange(100):3d}%] Building C object src/CMakeFiles/core.dir/{name}.c.o")
        elif kind == 1:
            crate = rng.choice(_CRATES)
            lines.append(f"{_BOLD_GREEN}   Compiling{_RESET} {crate} v1.{rng.randrange(40)}.{rng.randrange(200)}")
        elif kind == 2:
            lines.append(f"gcc -O2 -Wall -Wextra -fPIC -Iinclude -c src/{name}.c -o build/{name}.o")
        else:
            lines += [
                f"{_YELLOW}{_BOLD}warning{_RESET}{_BOLD}: unused variable: `{name}`{_RESET}",
                f"  --> src/{rng.choice(_WORDS)}.rs:{rng.randrange(1, 900)}:{rng.randrange(1, 40)}",
            ]
    return "\n".join(lines) + "\n"


def _pip_list_block(rng: random.Random) -> str:
    lines = ["Package            Version", "------------------ ---------"]
    for package in sorted(rng.sample(_PACKAGES, rng.randrange(8, 20)), key=str.lower):
        version = f"{rng.randrange(30)}.{rng.randrange(30)}.{rng.randrange(20)}"
        lines.append(f"{package:<18} {version}")
    return "\n".join(lines) + "\n"


def _git_log_block(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randrange(2, 6)):
        author = rng.choice(_AUTHORS)
        email = author.lower().replace(" ", ".") + "@example.com"
        lines += [
            f"{_YELLOW}commit {_pick(rng, _HEX, 40)}{_RESET}",
            f"Author: {author} <{email}>",
            f"Date:   {_timestamp(rng)}",
            "",
            f"    {rng.choice(_VERBS)} {rng.choice(_WORDS)} {rng.choice(_WORDS)} in the {rng.choice(_WORDS)} module",
            "",
        ]
    return "\n".join(lines) + "\n"


def _json_block(rng: random.Random) -> str:
    items = []
    for _ in range(rng.randrange(1, 4)):
        number = rng.randrange(1, 5000)
        items.append({
            "id": rng.randrange(10**8, 10**9),
            "number": number,
            "title": f"{rng.choice(_VERBS)} {rng.choice(_WORDS)} {rng.choice(_WORDS)}",
            "state": rng.choice(("open", "closed")),
            "user": {"login": rng.choice(_AUTHORS).split()[0].lower(), "id": rng.randrange(10**6, 10**7)},
            "labels": [{"name": rng.choice(_WORDS)} for _ in range(rng.randrange(3))],
            "created_at": _timestamp(rng),
            "html_url": f"https://github.com/acme/{rng.choice(_WORDS)}/pull/{number}",
            "head": {"ref": f"feature/{_identifier(rng)}", "sha": _pick(rng, _HEX, 40)},
        })
    return json.dumps(items, indent=2) + "\n"


def _npm_block(rng: random.Random) -> str:
    lines = [f"{_GREEN}✓{_RESET} {rng.randrange(100, 3000)} modules transformed."]
    for _ in range(rng.randrange(3, 10)):
        size = rng.randrange(1, 900)
        lines.append(f"dist/assets/{_identifier(rng)}-{_pick(rng, _ALNUM, 8)}.js   {size}.{rng.randrange(100):02d} kB │ "
                     f"gzip: {size // 3}.{rng.randrange(100):02d} kB")
    lines.append(f"{_GREEN}✓ built in {rng.randrange(1, 30)}.{rng.randrange(100):02d}s{_RESET} → dist/ …")
    lines.append(f"added {rng.randrange(50, 900)} packages, and audited {rng.randrange(900, 2000)} packages "
                 f"in {rng.randrange(2, 40)}s")
    return "\n".join(lines) + "\n"


_FILLERS: tuple[Callable[[random.Random], str], ...] = (
    _pytest_block, _pytest_block, _build_block, _build_block, _pip_list_block, _git_log_block, _json_block,
    _npm_block,
)
