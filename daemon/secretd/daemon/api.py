"""Request handlers: one coroutine per msgpack-rpc method."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from secretd.protocol import PROTOCOL_VERSION, VERSION
from secretd.protocol.errors import ErrorCode
from secretd.protocol.messages import (
    EnvParams,
    EnvResult,
    GetParams,
    HelloParams,
    HelloResult,
    ListParams,
    MaskParams,
    RemoveParams,
    ScopeCloseParams,
    ScopeOpenParams,
    ScopeOpenResult,
    SecretInfo,
    StatusResult,
    StreamCloseParams,
    StreamFeedParams,
    StreamOpenParams,
    UpdateParams,
    UpdateResult,
)
from secretd.protocol.sources import ClientSource, StaticSource

from . import logs
from .errors import RpcError, SourceFailed
from .masking import COMPILED, MAX_VALUE_BYTES, MaskStream, value_tier
from .masking.escapes import ACCELERATED
from .references import referenced_names
from .store import Scope, Secret

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["CHUNK_HANDLERS", "HANDLERS", "NOT_READY", "ChunkHandler", "Handler", "stream_feed_many_now"]

Handler = Callable[["Connection", Any], Awaitable[Any]]
ChunkHandler = Callable[["Connection", Any], Any]

#: Returned by a chunk handler when sources must be resolved or the scope's masker built first: the caller
#: then awaits the method's handler.
NOT_READY: Any = object()


def _scope(conn: Connection, scope_id: str | None) -> Scope:
    return conn.state.store.get(scope_id)


def _as_bytes(data: object, method: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    raise RpcError(
        ErrorCode.INVALID_PARAMS,
        f"invalid params for {method!r}: data must be bin or str, not {type(data).__name__}",
    )


def _with_type(data: bytes, like: object) -> bytes | str:
    """Return text for text: a client that sent a msgpack str gets a str back."""
    if isinstance(like, str):
        return data.decode("utf-8", "replace")
    return data


async def hello(conn: Connection, params: HelloParams) -> HelloResult:
    if params.protocol != PROTOCOL_VERSION:
        raise RpcError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {params.protocol} is not supported; this daemon speaks version "
            f"{PROTOCOL_VERSION}: upgrade the older side",
        )
    conn.client_name = params.client[:64]
    state = conn.state
    return HelloResult(
        protocol=PROTOCOL_VERSION,
        daemon_version=VERSION,
        instance_id=state.instance_id,
        max_message_size=state.settings.max_message_size,
        pid=state.pid,
    )


async def status(conn: Connection, params: None) -> StatusResult:
    state = conn.state
    global_scope = state.store.global_scope
    scopes = [global_scope, *state.store.conversations()]
    too_short = sorted(
        {f"{s.ref}:{secret.name}" if s is not global_scope else secret.name
         for s in scopes for secret in s.secrets.values() if _too_short(secret)}
    )
    return StatusResult(
        daemon_version=VERSION,
        protocol=PROTOCOL_VERSION,
        instance_id=state.instance_id,
        pid=state.pid,
        uptime=round(time.monotonic() - state.started, 3),
        socket=str(state.socket_path),
        scopes=len(state.store),
        secrets=sum(len(s.secrets) for s in scopes),
        global_secrets=len(global_scope.secrets),
        connections=len(state.connections),
        streams=sum(len(c.streams) for c in state.connections),
        too_short=too_short,
        placeholder=state.settings.placeholder,
        reference_mode=state.settings.reference_mode,
        masker_accelerated=ACCELERATED,
        masker_compiled=COMPILED,
    )


def _too_short(secret: Secret) -> bool:
    value = secret.cache.value
    return value is not None and value_tier(value) == "too_short"


async def scope_open(conn: Connection, params: ScopeOpenParams) -> ScopeOpenResult:
    scope = conn.state.store.open(
        label=params.label, owner=conn, keep=params.keep, ttl=params.ttl, mode=params.mode
    )
    conn.log.info(logs.SCOPE_OPENED, scope=scope.ref, label=scope.label, keep=scope.keep, ttl=params.ttl)
    return ScopeOpenResult(scope=scope.id, expires_in=params.ttl)


async def scope_close(conn: Connection, params: ScopeCloseParams) -> None:
    scope = _scope(conn, params.scope)
    conn.state.store.close(scope)
    conn.state.maskers.forget(scope)
    conn.log.info(logs.SCOPE_CLOSED, scope=scope.ref, reason="closed by client")


async def secrets_update(conn: Connection, params: UpdateParams) -> UpdateResult:
    scope = _scope(conn, params.scope)
    limit = conn.state.settings.max_secrets_per_scope
    new_names = {spec.name for spec in params.secrets} - scope.secrets.keys()
    if len(scope.secrets) + len(new_names) > limit:
        raise RpcError(ErrorCode.LIMIT_EXCEEDED, f"a scope contains at most {limit} secrets; remove some first")
    _check_not_configured(conn, scope, [spec.name for spec in params.secrets])
    seen: set[str] = set()
    for spec in params.secrets:
        if spec.name in seen:
            raise RpcError(ErrorCode.INVALID_SECRET, f"secret {spec.name!r} appears twice in one update")
        seen.add(spec.name)
        if isinstance(spec.source, StaticSource) and len(spec.source.value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
            raise RpcError(
                ErrorCode.INVALID_SECRET,
                f"the value of {spec.name!r} is longer than {MAX_VALUE_BYTES} bytes, the most that can be masked",
            )
        if isinstance(spec.source, ClientSource) and conn.framed is False:
            raise RpcError(ErrorCode.INVALID_SECRET, "client-held sources need the framed protocol of secretd's client")
    too_short: list[str] = []
    for spec in params.secrets:
        secret = scope.put(spec, origin=conn)
        if isinstance(spec.source, StaticSource) and spec.source.value and value_tier(spec.source.value) == "too_short":
            too_short.append(spec.name)
            conn.log.warning(logs.VALUE_TOO_SHORT, secret=spec.name, scope=scope.ref)
        if not isinstance(spec.source, (StaticSource, ClientSource)):
            scope.unresolved.add(secret)
    return UpdateResult(updated=[spec.name for spec in params.secrets], too_short=too_short)


def _check_not_configured(conn: Connection, scope: Scope, names: Iterable[str]) -> None:
    """Reject a change to a global secret that the config file defines: the next reload would undo it."""
    if scope.kind != "global":
        return
    configured = [name for name in names if name in conn.state.config.secrets]
    if configured:
        where = f" {conn.state.config_path}" if conn.state.config_path is not None else ""
        raise RpcError(
            ErrorCode.INVALID_SECRET,
            f"secret {configured[0]!r} is defined in the config file{where}; change it there and run "
            f"'secretctl reload', or use another name",
        )


async def secrets_remove(conn: Connection, params: RemoveParams) -> list[str]:
    scope = _scope(conn, params.scope)
    missing = [name for name in params.names if name not in scope.secrets]
    if missing:
        raise RpcError(ErrorCode.SECRET_NOT_FOUND, f"no secret named {', '.join(map(repr, missing))}; 'secretctl list' shows the names")
    _check_not_configured(conn, scope, params.names)
    for name in params.names:
        scope.remove(name)
    return list(params.names)


async def secrets_list(conn: Connection, params: ListParams) -> list[SecretInfo]:
    state = conn.state
    scope = _scope(conn, params.scope)
    now = time.monotonic()
    infos = []
    for secret in sorted(state.store.visible(scope).values(), key=lambda s: s.name):
        cache = secret.cache
        if cache.failed_at is not None:
            cache_state = "stale" if cache.value is not None else "failed"
        elif cache.value is not None:
            ttl = getattr(secret.spec.source, "ttl", None)
            expired = ttl is not None and ttl > 0 and cache.resolved_at is not None and now - cache.resolved_at >= ttl
            cache_state = "stale" if expired else "fresh"
        else:
            cache_state = "unresolved"
        infos.append(
            SecretInfo(
                name=secret.name,
                description=secret.spec.description,
                source=secret.source_kind,
                scope=secret.scope.kind,
                state=cache_state,
                inject=secret.spec.inject,
                age=None if cache.resolved_at is None else round(now - cache.resolved_at, 3),
                last_error=cache.error,
                too_short=_too_short(secret),
                values_masked=sum(1 for v in secret.history if value_tier(v) != "too_short"),
            )
        )
    return infos


def _client_call(conn: Connection, secret: Secret):  # type: ignore[no-untyped-def]
    origin = secret.origin
    if origin is None or origin.closed:
        return None

    async def call(source: ClientSource, name: str) -> str:
        result = await origin.call("source.get", [source.handle, name])
        if not isinstance(result, str):
            raise SourceFailed("the client-held source returned no string value")
        return result

    return call


async def _resolve(conn: Connection, secret: Secret) -> tuple[str | None, str, str | None]:
    """Resolve one secret: (value, cache outcome, error reason)."""
    try:
        resolution = await conn.state.resolver.resolve(secret, _client_call(conn, secret))
    except SourceFailed as exc:
        # Masking waits only for a source's first attempt: a failing source must not
        # stall every mask call again each time its back-off ends.
        secret.scope.unresolved.discard(secret)
        return None, "failed", exc.reason
    secret.scope.unresolved.discard(secret)
    return resolution.value, resolution.outcome, None


async def _resolve_many(conn: Connection, secrets: Iterable[Secret]) -> dict[str, tuple[str | None, str, str | None]]:
    results: dict[str, tuple[str | None, str, str | None]] = {}

    async def one(secret: Secret) -> None:
        results[secret.name] = await _resolve(conn, secret)

    async with anyio.create_task_group() as tg:
        for secret in secrets:
            tg.start_soon(one, secret)
    return results


async def secrets_get(conn: Connection, params: GetParams) -> str:
    scope = _scope(conn, params.scope)
    secret = conn.state.store.visible(scope).get(params.name)
    if secret is None:
        raise RpcError(ErrorCode.SECRET_NOT_FOUND, f"no secret named {params.name!r}; 'secretctl list' shows the names")
    value, outcome, error = await _resolve(conn, secret)
    conn.audit("get", scope, {params.name: outcome if value is not None else "failed"})
    if value is None:
        raise RpcError(ErrorCode.SOURCE_FAILED, f"secret {params.name!r} could not be resolved: {error}")
    return value


# Reasons for keeping a referenced secret out, in the audit log and in EnvResult.denied.
_NEVER = "inject = never"
_PROGRAM_NOT_ALLOWED = "program not allowed"


def _selected(conn: Connection, scope: Scope, params: EnvParams) -> tuple[list[Secret], dict[str, str]]:
    visible = conn.state.store.visible(scope)
    mode = scope.mode or conn.state.settings.reference_mode
    decisions: dict[str, str] = {}
    if params.all:
        wanted = set(visible) - set(params.exclude)
    else:
        wanted = referenced_names(params.command, visible.keys(), mode)
    programs: set[str] | None = None
    chosen = []
    for name, secret in visible.items():
        inject = secret.spec.inject
        if inject == "never":
            if name in wanted:
                decisions[name] = f"denied ({_NEVER})"
            continue
        if inject != "always" and name not in wanted:
            continue
        if secret.spec.programs is not None and not params.all:
            if programs is None:
                from .shell import parse_command

                programs = parse_command(params.command).programs
            if not programs.intersection(secret.spec.programs):
                decisions[name] = f"denied ({_PROGRAM_NOT_ALLOWED})"
                continue
        chosen.append(secret)
    return chosen, decisions


async def env_resolve(conn: Connection, params: EnvParams) -> EnvResult:
    scope = _scope(conn, params.scope)
    chosen, decisions = _selected(conn, scope, params)
    results = await _resolve_many(conn, chosen)
    env: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, (value, outcome, error) in sorted(results.items()):
        if value is None:
            errors[name] = error or "source failed"
            decisions[name] = "failed"
        else:
            env[name] = value
            decisions[name] = f"injected ({outcome})"
    conn.audit("env.resolve", scope, decisions)
    denied = {name: decision[len("denied (") : -1] for name, decision in decisions.items() if decision.startswith("denied (")}
    return EnvResult(env=env, errors=errors, denied=denied)


def _needs_resolution(conn: Connection, scope: Scope) -> bool:
    """Tell whether a dynamic source visible in ``scope`` has never been resolved."""
    if conn.state.store.global_scope.unresolved:
        return True
    return scope.kind == "conversation" and bool(scope.unresolved)


async def _prepare_masking(conn: Connection, scope: Scope) -> None:
    """Resolve dynamic sources never resolved yet, so that their values are masked too."""
    if not _needs_resolution(conn, scope):
        return
    pending = set(conn.state.store.global_scope.unresolved)
    if scope.kind == "conversation":
        pending |= scope.unresolved
    await _resolve_many(conn, pending)


# `mask` and `stream.feed` arrive once per chunk of output.  Their chunk handlers
# below do the whole request without awaiting.  When a source must be resolved or
# the masker built first, the async handlers do it instead, with the same errors
# in the same order.


def mask_now(conn: Connection, params: MaskParams) -> bytes | str:
    scope = _scope(conn, params.scope)
    data = _as_bytes(params.data, "mask")
    masker = conn.state.maskers.cached(scope)
    if masker is None or _needs_resolution(conn, scope):
        return NOT_READY
    return _with_type(masker.mask(data), params.data)


async def mask(conn: Connection, params: MaskParams) -> bytes | str:
    scope = _scope(conn, params.scope)
    data = _as_bytes(params.data, "mask")
    await _prepare_masking(conn, scope)
    masker = await conn.state.maskers.get(scope)
    return _with_type(masker.mask(data), params.data)


async def stream_open(conn: Connection, params: StreamOpenParams) -> int:
    scope = _scope(conn, params.scope)
    limit = conn.state.settings.max_streams_per_connection
    if len(conn.streams) >= limit:
        raise RpcError(ErrorCode.LIMIT_EXCEEDED, f"at most {limit} streams per connection; close finished streams")
    await _prepare_masking(conn, scope)
    conn.next_stream += 1
    conn.streams[conn.next_stream] = (scope, MaskStream(conn.state.maskers.policy))
    return conn.next_stream


def _stream(conn: Connection, stream_id: int) -> tuple[Scope, MaskStream]:
    entry = conn.streams.get(stream_id)
    if entry is None:
        raise RpcError(ErrorCode.STREAM_NOT_FOUND, f"stream {stream_id} is not open on this connection")
    return entry


def _fed_stream(conn: Connection, params: StreamFeedParams) -> tuple[Scope, MaskStream, bytes]:
    scope, stream = _stream(conn, params.stream)
    if scope.kind == "conversation":
        conn.state.store.get(scope.id)  # raises when the scope has ended; stream.close still works
    return scope, stream, _as_bytes(params.data, "stream.feed")


def stream_feed_now(conn: Connection, params: StreamFeedParams) -> bytes | str:
    scope, stream, data = _fed_stream(conn, params)
    masker = conn.state.maskers.cached(scope)
    if masker is None or _needs_resolution(conn, scope):
        return NOT_READY
    return _with_type(stream.feed(masker, data), params.data)


def stream_feed_many_now(conn: Connection, params: list[StreamFeedParams]) -> list[bytes | str] | Any:
    """Feed consecutive chunks of one stream with one scan (`MaskStream.feed_many`).

    Returns `NOT_READY`, having changed nothing, when any of the requests
    would fail or take the slower path, so that the caller handles them one
    by one instead.
    """
    try:
        fed = [_fed_stream(conn, item) for item in params]
    except RpcError:
        return NOT_READY
    scope, stream, _ = fed[0]
    if any(other is not stream for _, other, _ in fed):
        return NOT_READY
    masker = conn.state.maskers.cached(scope)
    if masker is None or _needs_resolution(conn, scope):
        return NOT_READY
    outputs = stream.feed_many(masker, [data for _, _, data in fed])
    return [_with_type(output, item.data) for output, item in zip(outputs, params)]


async def stream_feed(conn: Connection, params: StreamFeedParams) -> bytes | str:
    scope, stream, data = _fed_stream(conn, params)
    await _prepare_masking(conn, scope)
    masker = await conn.state.maskers.get(scope)
    return _with_type(stream.feed(masker, data), params.data)


async def stream_close(conn: Connection, params: StreamCloseParams) -> bytes:
    scope, stream = _stream(conn, params.stream)
    del conn.streams[params.stream]
    return stream.flush(await conn.state.maskers.get(scope))


async def reload(conn: Connection, params: None) -> dict[str, object]:
    return await conn.server.reload()


HANDLERS: dict[str, Handler] = {
    "hello": hello,
    "status": status,
    "scope.open": scope_open,
    "scope.close": scope_close,
    "secrets.update": secrets_update,
    "secrets.remove": secrets_remove,
    "secrets.list": secrets_list,
    "secrets.get": secrets_get,
    "env.resolve": env_resolve,
    "mask": mask,
    "stream.open": stream_open,
    "stream.feed": stream_feed,
    "stream.close": stream_close,
    "reload": reload,
}

#: Handlers that return the result without awaiting, or ``NOT_READY``; see ``mask_now``.
CHUNK_HANDLERS: dict[str, ChunkHandler] = {
    "mask": mask_now,
    "stream.feed": stream_feed_now,
}


