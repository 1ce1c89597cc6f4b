"""Fetching a value from each kind of source.

Every function returns the value or raises ``SourceFailed`` with a reason
that names the source but never contains a value.  Timeouts are applied by
the resolver around these calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from secretd.protocol.sources import (
    ClientSource,
    CommandSource,
    EnvSource,
    FileSource,
    HttpSource,
    SecretServiceSource,
    Source,
    StaticSource,
    VaultSource,
)

from .errors import SourceFailed

__all__ = ["ClientCall", "MAX_VALUE_BYTES", "fetch"]

#: Largest value a source may produce, in bytes.
MAX_VALUE_BYTES = 1 << 20

#: Calls a client-held source back: ``(source, secret name) -> value``.
ClientCall = Callable[[ClientSource, str], Awaitable[str]]


async def fetch(source: Source, name: str, client_call: ClientCall | None) -> str:
    """Fetch the current value of ``source``."""
    if isinstance(source, StaticSource):
        return source.value
    if isinstance(source, EnvSource):
        return _from_env(source)
    if isinstance(source, FileSource):
        return await _from_file(source)
    if isinstance(source, CommandSource):
        return await _from_command(source)
    if isinstance(source, HttpSource):
        return await _from_http(source)
    if isinstance(source, VaultSource):
        return await _from_vault(source)
    if isinstance(source, SecretServiceSource):
        return await anyio.to_thread.run_sync(_from_secret_service, source, abandon_on_cancel=True)
    if isinstance(source, ClientSource):
        if client_call is None:
            raise SourceFailed("the client that registered this source has disconnected")
        return await client_call(source, name)
    raise SourceFailed(f"unsupported source kind {type(source).__name__}")


def _strip_newline(value: str) -> str:
    if value.endswith("\r\n"):
        return value[:-2]
    if value.endswith("\n"):
        return value[:-1]
    return value


def _decode(data: bytes, what: str) -> str:
    if len(data) > MAX_VALUE_BYTES:
        raise SourceFailed(f"{what} produced more than {MAX_VALUE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceFailed(f"{what} produced bytes that are not valid UTF-8") from None


def _from_env(source: EnvSource) -> str:
    value = os.environ.get(source.var)
    if value is None:
        raise SourceFailed(f"environment variable {source.var!r} is not set in the daemon's environment")
    return value


async def _from_file(source: FileSource) -> str:
    path = Path(source.path)
    if not path.is_absolute():
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials is None:
            raise SourceFailed(
                f"relative path {source.path!r} needs $CREDENTIALS_DIRECTORY (systemd credentials); "
                "give an absolute path"
            )
        path = Path(credentials) / path
    try:
        data = await anyio.Path(path).read_bytes()
    except OSError as exc:
        raise SourceFailed(f"cannot read file {str(path)!r}: {exc.strerror}") from None
    return _strip_newline(_decode(data, f"file {str(path)!r}"))


async def _from_command(source: CommandSource) -> str:
    program = source.argv[0]
    try:
        process = await anyio.open_process(
            source.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise SourceFailed(f"cannot run command {program!r}: {exc.strerror}") from None
    try:
        output, too_long = await _read_output(process)
        if too_long:
            _kill_group(process.pid)
        status = await process.wait()
    finally:
        # The command runs in a session of its own: end whatever it left behind
        # (a background child holding stdout open, or everything on a timeout).
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    if too_long:
        raise SourceFailed(f"command {program!r} produced more than {MAX_VALUE_BYTES} bytes")
    if status != 0:
        # stderr is not quoted: a failing command may print the value there.
        raise SourceFailed(f"command {program!r} exited with status {status}; run it by hand to see its error")
    return _strip_newline(_decode(bytes(output), f"command {program!r}"))


#: Seconds to keep reading stdout after the command exits, for output still in the pipe.
_EXIT_GRACE = 0.2


async def _read_output(process: anyio.abc.Process) -> tuple[bytearray, bool]:
    """Read stdout up to the limit, until it closes or shortly after the process exits."""
    assert process.stdout is not None
    output = bytearray()
    too_long = False

    async def stop_after_exit(scope: anyio.CancelScope) -> None:
        await process.wait()
        await anyio.sleep(_EXIT_GRACE)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_after_exit, tg.cancel_scope)
        async for chunk in process.stdout:
            output += chunk
            if len(output) > MAX_VALUE_BYTES:
                too_long = True
                break
        tg.cancel_scope.cancel()
    return output, too_long


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _http_get(url: str, headers: dict[str, str], timeout: float, what: str) -> bytes:
    import httpx

    body = bytearray()
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise SourceFailed(f"{what} returned HTTP status {response.status_code}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_VALUE_BYTES:
                        raise SourceFailed(f"{what} returned more than {MAX_VALUE_BYTES} bytes")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceFailed(f"{what} failed: {type(exc).__name__}") from None
    return bytes(body)


def _json_field(body: bytes, keys: list[str], label: str, what: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        raise SourceFailed(f"{what} did not return JSON") from None
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            raise SourceFailed(f"{what}: {label} not found")
        document = document[key]
    if not isinstance(document, str):
        raise SourceFailed(f"{what}: {label} is not a string")
    return document


async def _from_http(source: HttpSource) -> str:
    what = f"HTTP lookup of {_safe_url(source.url)}"
    body = await _http_get(source.url, source.headers, source.timeout, what)
    if source.json_field is not None:
        return _json_field(body, source.json_field.split("."), f"JSON field {source.json_field!r}", what)
    return _strip_newline(_decode(body, what))


async def _from_vault(source: VaultSource) -> str:
    token = _vault_token(source)
    url = f"{source.address.rstrip('/')}/v1/{source.mount.strip('/')}/data/{source.path.strip('/')}"
    what = f"Vault read of {source.mount}/{source.path}"
    body = await _http_get(url, {"X-Vault-Token": token}, source.timeout, what)
    # A KV field name may contain dots ("tls.crt"), so it is one key, not a path.
    return _json_field(body, ["data", "data", source.field], f"field {source.field!r}", what)


def _vault_token(source: VaultSource) -> str:
    if source.token_file is not None:
        try:
            return Path(source.token_file).read_text().strip()
        except OSError as exc:
            raise SourceFailed(f"cannot read Vault token file {source.token_file!r}: {exc.strerror}") from None
    token = os.environ.get(source.token_env)
    if not token:
        raise SourceFailed(f"no Vault token: set {source.token_env} in the daemon's environment or token_file")
    return token


def _from_secret_service(source: SecretServiceSource) -> str:
    import secretstorage

    try:
        connection = secretstorage.dbus_init()
    except secretstorage.SecretServiceNotAvailableException as exc:
        raise SourceFailed(f"Secret Service not available on the session bus: {exc}") from None
    try:
        collection = secretstorage.get_default_collection(connection)
        if collection.is_locked():
            raise SourceFailed("the default Secret Service collection is locked; unlock it (log in to the keyring)")
        for item in collection.search_items(source.attributes):
            if item.is_locked():
                continue
            return _decode(item.get_secret(), "Secret Service item")
    except secretstorage.exceptions.SecretStorageException as exc:
        raise SourceFailed(f"Secret Service lookup failed: {type(exc).__name__}") from None
    finally:
        connection.close()
    raise SourceFailed(f"no Secret Service item matches attributes {sorted(source.attributes)!r}")


def _safe_url(url: str) -> str:
    """Return the URL without query string or user info, which may carry credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
