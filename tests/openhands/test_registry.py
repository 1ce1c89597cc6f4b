"""``SecretdSecretRegistry`` against the behaviours of the SDK's ``SecretRegistry`` (openhands-sdk 1.58.2).

Same inputs, same outputs, except where secretd differs on purpose.  Those
tests have "difference" in their name, and docs/openhands.md gives the reason.
"""

from __future__ import annotations

import gc
import inspect
import time
from enum import Enum
from typing import Annotated, Any

import pytest

pytest.importorskip("openhands.sdk", reason="needs openhands-sdk (Python 3.12+): run make test-openhands")

from openhands.sdk.conversation.secret_registry import SecretRegistry, StreamOutputMask  # noqa: E402
from openhands.sdk.secret import LookupSecret, SecretSource, StaticSecret  # noqa: E402
from openhands.sdk.utils.masking import PreserveDataUrls, SkipSecretMasking  # noqa: E402
from pydantic import BaseModel, PrivateAttr, SecretStr  # noqa: E402

from secretd.client.openhands import SecretdSecretRegistry  # noqa: E402
from secretd.protocol.messages import SecretSpec  # noqa: E402
from secretd.protocol.sources import StaticSource  # noqa: E402

from ..conftest import Daemon  # noqa: E402
from .conftest import LookupServer, restart_daemon  # noqa: E402

pytestmark = pytest.mark.openhands

HIDDEN = "<secret-hidden>"


class DynamicSecret(SecretSource):
    """A user-defined source, held in the agent process."""

    token: str = "dynamic-token-456"

    def get_value(self) -> str | None:
        return self.token


class FailingSecret(SecretSource):
    def get_value(self) -> str | None:
        raise RuntimeError("backend unavailable")


class RotatingSecret(SecretSource):
    """Returns a new value on every call, and raises once ``failing`` is set."""

    prefix: str = "rotating-value-"
    _calls: int = PrivateAttr(default=0)
    _failing: bool = PrivateAttr(default=False)

    def get_value(self) -> str | None:
        if self._failing:
            raise RuntimeError("backend unavailable")
        self._calls += 1
        return f"{self.prefix}{self._calls:04d}"


class FlakySecret(SecretSource):
    """Raises until ``_healthy`` is set; counts the calls."""

    value: str = "recovered-value-9a8b"
    _calls: int = PrivateAttr(default=0)
    _healthy: bool = PrivateAttr(default=False)

    def get_value(self) -> str | None:
        self._calls += 1
        if not self._healthy:
            raise OSError("backend unavailable")
        return self.value


class SlowSecret(SecretSource):
    """Returns its value only after ``delay`` seconds."""

    delay: float = 2.0

    def get_value(self) -> str | None:
        time.sleep(self.delay)
        return "slow-value-1234"


class Color(str, Enum):
    RED = "red"


class Inner(BaseModel):
    text: str
    items: list[str]
    mapping: dict[str, str]
    pair: tuple[str, int]
    tags: set[str]


class Outer(BaseModel):
    inner: Inner
    count: int
    blob: bytes
    color: Color
    key: SecretStr
    raw: Annotated[str, SkipSecretMasking()]
    image: Annotated[str, PreserveDataUrls()]
    url: Annotated[str, PreserveDataUrls()]


# The SDK's behaviours.


def test_update_twice_keeps_newest_value(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"API_KEY": "first-value-0001"})
    registry.update_secrets({"API_KEY": "second-value-0002"})

    assert registry.get_secret_value("API_KEY") == "second-value-0002"
    assert registry.get_secrets_as_env_vars("echo $API_KEY") == {"API_KEY": "second-value-0002"}
    assert registry.secret_sources["API_KEY"].get_value() == "second-value-0002"


def test_env_vars_for_referenced_name(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"API_KEY": "test-api-key-123"})

    env = registry.get_secrets_as_env_vars("curl -H 'X-API-Key: $API_KEY' https://api.example.com")

    assert env == {"API_KEY": "test-api-key-123"}


def test_env_vars_for_two_names(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"API_KEY": "test-api-key-123", "AUTH_TOKEN": "auth-token-456"})

    env = registry.get_secrets_as_env_vars("curl -H 'X-API-Key: $API_KEY' -H 'Authorization: $AUTH_TOKEN'")

    assert env == {"API_KEY": "test-api-key-123", "AUTH_TOKEN": "auth-token-456"}


def test_env_vars_leave_unnamed_out(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"API_KEY": "test-api-key-123", "OTHER": "other-value-789"})

    assert registry.get_secrets_as_env_vars("echo hello") == {}
    assert registry.get_secrets_as_env_vars("echo $API_KEY") == {"API_KEY": "test-api-key-123"}


def test_env_vars_skip_failing_source(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"GOOD": "good-value-123", "BAD": FailingSecret()})

    env = registry.get_secrets_as_env_vars("echo $GOOD $BAD")

    assert env == {"GOOD": "good-value-123"}


def test_dynamic_source_called_back(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"DYNAMIC_TOKEN": DynamicSecret()})

    env = registry.get_secrets_as_env_vars("export DYNAMIC_TOKEN=$DYNAMIC_TOKEN")

    assert env == {"DYNAMIC_TOKEN": "dynamic-token-456"}


def test_all_env_vars_honour_exclude(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"KEEP": "super-secret", "DROP": "dropped-value", "BAD": FailingSecret()})

    env = registry.get_all_secrets_as_env_vars(exclude={"DROP"})

    assert env == {"KEEP": "super-secret"}
    assert registry.mask_secrets_in_output("leak: super-secret") == f"leak: {HIDDEN}"


def test_get_secret_value_cases(registry: SecretdSecretRegistry) -> None:
    assert registry.get_secret_value("API_KEY") is None

    registry.update_secrets({"API_KEY": "test-api-key-123", "BAD": FailingSecret(), "DYNAMIC": DynamicSecret()})

    assert registry.get_secret_value("API_KEY") == "test-api-key-123"
    assert registry.get_secret_value("MISSING") is None
    assert registry.get_secret_value("BAD") is None
    assert registry.get_secret_value("DYNAMIC") == "dynamic-token-456"
    assert registry.mask_secrets_in_output("got dynamic-token-456") == f"got {HIDDEN}"


def test_empty_value_never_masked(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"EMPTY": ""})

    assert registry.mask_secrets_in_output("hello") == "hello"
    assert registry.get_secrets_as_env_vars("echo $EMPTY") == {}
    assert registry.get_secret_value("EMPTY") is None


def test_git_remote_token_masked_without_reference(registry: SecretdSecretRegistry) -> None:
    token = "ghp_remoteToken1234567890abcdef"
    registry.update_secrets({"GITHUB_TOKEN": token})
    output = (
        f"origin\thttps://{token}@github.com/repo/test.git (fetch)\n"
        f"origin\thttps://{token}@github.com/repo/test.git (push)"
    )

    masked = registry.mask_secrets_in_output(output)

    assert masked == (
        f"origin\thttps://{HIDDEN}@github.com/repo/test.git (fetch)\n"
        f"origin\thttps://{HIDDEN}@github.com/repo/test.git (push)"
    )


def test_failing_source_retried_after_back_off(registry: SecretdSecretRegistry) -> None:
    now = [1000.0]
    registry._clock = lambda: now[0]
    flaky = FlakySecret()
    registry.update_secrets({"FLAKY": flaky})

    assert registry.mask_secrets_in_output("first") == "first"
    assert flaky._calls == 1
    flaky._healthy = True
    now[0] += 30
    registry.mask_secrets_in_output("second")
    assert flaky._calls == 1

    now[0] += 31
    time.sleep(1.1)  # the daemon's own back-off after a first failure is 1 s of real time
    masked = registry.mask_secrets_in_output("leak: recovered-value-9a8b")

    assert flaky._calls == 2
    assert masked == f"leak: {HIDDEN}"


def test_stream_mask_longest_value_wins(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"SHORT": "abc", "LONG": "abc123"})
    registry.get_all_secrets_as_env_vars()

    mask = registry.compile_stream_mask()
    output = mask.feed("leak: abc123") + mask.flush()

    assert isinstance(mask, StreamOutputMask)
    assert output == f"leak: {HIDDEN}"


def test_stream_mask_value_split_across_chunks(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"PASSWORD": "hunter2"})
    registry.get_all_secrets_as_env_vars()

    mask = registry.compile_stream_mask()
    output = "".join(mask.feed(chunk) for chunk in ["leak: ", "hunt", "er2", " done"]) + mask.flush()

    assert output == f"leak: {HIDDEN} done"


def test_stream_mask_without_secrets_passes_text(registry: SecretdSecretRegistry) -> None:
    mask = registry.compile_stream_mask()

    assert mask.feed("hello ") + mask.feed("world") + mask.flush() == "hello world"


def test_stream_dropped_without_flush_is_closed(registry: SecretdSecretRegistry, daemon: Daemon) -> None:
    registry.update_secrets({"PASSWORD": "hunter2-long-value"})
    mask = registry.compile_stream_mask()
    mask.feed("partial hunter")
    with daemon.client() as observer:
        assert observer.status().streams == 1

        del mask
        gc.collect()
        registry.mask_secrets_in_output("next call")

        assert observer.status().streams == 0


def test_mask_model_nested_fields(registry: SecretdSecretRegistry) -> None:
    secret = "model-secret-value-42"
    registry.update_secrets({"MODEL_SECRET": secret})
    registry.get_all_secrets_as_env_vars()
    data_url = f"data:image/png;base64,{secret}"
    model = Outer(
        inner=Inner(
            text=f"text {secret}",
            items=["plain", f"item {secret}"],
            mapping={secret: f"value {secret}"},
            pair=(f"pair {secret}", 7),
            tags={f"tag {secret}"},
        ),
        count=3,
        blob=secret.encode(),
        color=Color.RED,
        key=SecretStr(secret),
        raw=f"raw {secret}",
        image=data_url,
        url=f"see {secret}",
    )

    masked = registry.mask_secrets_in_model(model)

    assert masked.inner.text == f"text {HIDDEN}"
    assert masked.inner.items == ["plain", f"item {HIDDEN}"]
    assert masked.inner.mapping == {secret: f"value {HIDDEN}"}
    assert masked.inner.pair == (f"pair {HIDDEN}", 7)
    assert masked.inner.tags == {f"tag {HIDDEN}"}
    assert masked.count == 3
    assert masked.blob == secret.encode()
    assert masked.color is Color.RED
    assert masked.key.get_secret_value() == secret
    assert masked.raw == f"raw {secret}"
    assert masked.image == data_url
    assert masked.url == f"see {HIDDEN}"
    assert model.inner.text == f"text {secret}"


def test_mask_model_matches_sdk(registry: SecretdSecretRegistry) -> None:
    secret = "model-secret-value-42"
    sdk = SecretRegistry()
    for each in (registry, sdk):
        each.update_secrets({"MODEL_SECRET": secret})
        each.get_secret_value("MODEL_SECRET")
    model = Outer(
        inner=Inner(text=secret, items=[secret], mapping={"k": secret}, pair=(secret, 1), tags={secret}),
        count=1, blob=b"", color=Color.RED, key=SecretStr(secret), raw=secret, image=secret, url=secret,
    )

    assert registry.mask_secrets_in_model(model) == sdk.mask_secrets_in_model(model)


def test_secret_infos_for_prompt(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({
        "API_KEY": StaticSecret(value=SecretStr("api-key-value-1"), description="old description"),
        "PLAIN": "plain-value-2",
    })
    registry.update_secrets({"API_KEY": StaticSecret(value=SecretStr("api-key-value-1"), description="API key")})

    assert registry.get_secret_infos() == [
        {"name": "API_KEY", "description": "API key"},
        {"name": "PLAIN", "description": None},
    ]


def test_secret_infos_empty(registry: SecretdSecretRegistry) -> None:
    assert registry.get_secret_infos() == []


def test_rotating_source_masked_each_time(registry: SecretdSecretRegistry) -> None:
    rotating = RotatingSecret()
    registry.update_secrets({"ROTATING": rotating})

    first = registry.get_secrets_as_env_vars("echo $ROTATING")["ROTATING"]
    second = registry.get_secrets_as_env_vars("echo $ROTATING")["ROTATING"]

    assert first != second
    assert registry.mask_secrets_in_output(f"{first} {second}") == f"{HIDDEN} {HIDDEN}"


# secretd's deliberate differences.


def test_difference_names_are_whole_identifiers(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"TOKEN": "plain-token-1234", "GITHUB_TOKEN": "github-token-5678"})

    assert registry.get_secrets_as_env_vars("echo $GITHUB_TOKEN") == {"GITHUB_TOKEN": "github-token-5678"}
    assert registry.get_secrets_as_env_vars("echo $token $TOKENS") == {}
    assert registry.find_secrets_in_text('python -c \'os.environ["TOKEN"]\'') == {"TOKEN"}


def test_difference_substring_mode_matches_sdk(daemon: Daemon) -> None:
    registry = SecretdSecretRegistry.connect(daemon.socket_path, mode="substring")
    sdk = SecretRegistry()
    secrets = {"TOKEN": "plain-token-1234", "GITHUB_TOKEN": "github-token-5678"}
    try:
        registry.update_secrets(secrets)
        sdk.update_secrets(secrets)
        for command in ["echo $GITHUB_TOKEN", "echo $token", "ls"]:
            assert registry.find_secrets_in_text(command) == sdk.find_secrets_in_text(command)
            assert registry.get_secrets_as_env_vars(command) == sdk.get_secrets_as_env_vars(command)
    finally:
        registry.close()


def test_difference_rotated_values_all_masked(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"API_KEY": "first-value-0001"})
    registry.update_secrets({"API_KEY": "second-value-0002"})

    masked = registry.mask_secrets_in_output("old first-value-0001 new second-value-0002")

    assert masked == f"old {HIDDEN} new {HIDDEN}"


def test_difference_short_values_injected_not_masked(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"FLAG": "yes", "PIN": "4711"})

    assert registry.get_secrets_as_env_vars("run --flag $FLAG --pin $PIN") == {"FLAG": "yes", "PIN": "4711"}
    assert registry.mask_secrets_in_output("yes, eyes") == "yes, eyes"
    assert registry.mask_secrets_in_output("pin 4711 and 47110") == f"pin {HIDDEN} and 47110"


def test_difference_masking_fails_closed(registry: SecretdSecretRegistry, daemon: Daemon) -> None:
    registry.update_secrets({"API_KEY": "test-api-key-123"})
    daemon.stop()

    masked = registry.mask_secrets_in_output("leak: test-api-key-123")
    env = registry.get_secrets_as_env_vars("echo $API_KEY")
    mask = registry.compile_stream_mask()
    streamed = mask.feed("leak: test-api-key-123") + mask.flush()

    assert "test-api-key-123" not in masked
    assert masked.startswith("[secretd: output withheld")
    assert env == {}
    assert "test-api-key-123" not in streamed
    assert streamed.startswith("[secretd: output withheld")


def test_difference_lookup_cached_by_daemon(registry: SecretdSecretRegistry, lookup_server: LookupServer) -> None:
    registry.update_secrets({
        "LOOKED_UP": LookupSecret(url=lookup_server.url, headers={"Authorization": "Bearer lookup-auth-token"}),
    })

    first = registry.get_secrets_as_env_vars("echo $LOOKED_UP")
    second = registry.get_secrets_as_env_vars("echo $LOOKED_UP")

    assert first == {"LOOKED_UP": lookup_server.value}
    assert second == first
    assert lookup_server.requests == 1
    assert lookup_server.headers[0]["Authorization"] == "Bearer lookup-auth-token"
    assert registry.mask_secrets_in_output(f"got {lookup_server.value}") == f"got {HIDDEN}"


def test_lookup_masked_before_any_reference(registry: SecretdSecretRegistry, lookup_server: LookupServer) -> None:
    registry.update_secrets({"LOOKED_UP": LookupSecret(url=lookup_server.url)})

    assert registry.mask_secrets_in_output(f"got {lookup_server.value}") == f"got {HIDDEN}"


def test_client_held_masked_before_any_reference(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"DYNAMIC": DynamicSecret()})

    assert registry.mask_secrets_in_output("got dynamic-token-456") == f"got {HIDDEN}"


def test_client_held_source_times_out(daemon: Daemon) -> None:
    registry = SecretdSecretRegistry.connect(daemon.socket_path, callback_timeout=0.5)
    try:
        registry.update_secrets({"SLOW": SlowSecret(delay=2.0), "FAST": "fast-value-1234"})
        started = time.monotonic()

        env = registry.get_secrets_as_env_vars("echo $SLOW $FAST")

        assert env == {"FAST": "fast-value-1234"}
        assert time.monotonic() - started < 10
        assert registry.get_secret_value("FAST") == "fast-value-1234"
    finally:
        registry.close()


def test_difference_failing_source_serves_last_value(registry: SecretdSecretRegistry) -> None:
    rotating = RotatingSecret()
    registry.update_secrets({"ROTATING": rotating, "NEVER": FailingSecret()})
    last = registry.get_secrets_as_env_vars("echo $ROTATING")["ROTATING"]
    rotating._failing = True

    env = registry.get_secrets_as_env_vars("echo $ROTATING $NEVER")

    assert env == {"ROTATING": last}
    assert registry.mask_secrets_in_output(last) == HIDDEN


def test_difference_invalid_name_rejected(registry: SecretdSecretRegistry) -> None:
    with pytest.raises(ValueError, match="invalid secret name 'my-token'"):
        registry.update_secrets({"my-token": "value-1234"})
    with pytest.raises(ValueError, match="reserved"):
        registry.update_secrets({"_secretd_tracked_0": "value-1234"})


def test_tracked_values_masked_never_injected(registry: SecretdSecretRegistry) -> None:
    registry.track_exported_values({"CODEX_AUTH_JSON.abc.tokens.access_token": "tracked-token-value-1", "EMPTY": ""})

    assert registry.mask_secrets_in_output("t=tracked-token-value-1") == f"t={HIDDEN}"
    assert registry.get_all_secrets_as_env_vars() == {}
    assert registry.get_secret_infos() == []


def test_global_secrets_visible(registry: SecretdSecretRegistry, daemon: Daemon) -> None:
    with daemon.client() as admin:
        admin.update_secrets(None, [SecretSpec(name="SHARED_KEY", source=StaticSource(value="shared-value-777"),
                                               description="shared by every conversation")])
    registry.update_secrets({"OWN": "own-value-888"})

    assert registry.get_secrets_as_env_vars("echo $SHARED_KEY $OWN") == {
        "SHARED_KEY": "shared-value-777", "OWN": "own-value-888",
    }
    assert registry.get_secret_infos() == [
        {"name": "OWN", "description": None},
        {"name": "SHARED_KEY", "description": "shared by every conversation"},
    ]


def test_restart_registers_scope_again(registry: SecretdSecretRegistry, daemon: Daemon) -> None:
    registry.update_secrets({"API_KEY": "test-api-key-123", "DYNAMIC": DynamicSecret()})
    before = registry.conversation.client.instance_id

    after = restart_daemon(daemon)

    assert after != before
    assert registry.get_secrets_as_env_vars("echo $API_KEY $DYNAMIC") == {
        "API_KEY": "test-api-key-123", "DYNAMIC": "dynamic-token-456",
    }
    assert registry.conversation.client.instance_id == after
    assert registry.mask_secrets_in_output("k=test-api-key-123") == f"k={HIDDEN}"


def test_stream_cut_by_restart_withheld(registry: SecretdSecretRegistry, daemon: Daemon) -> None:
    registry.update_secrets({"PASSWORD": "hunter2-long-value"})
    mask = registry.compile_stream_mask()
    before = mask.feed("first part ")
    restart_daemon(daemon)
    registry.mask_secrets_in_output("reconnect")
    fresh = registry.compile_stream_mask()
    fresh_start = fresh.feed("other stream ")

    after = mask.feed("leak: hunter2-long-value")
    tail = mask.flush()

    assert before + after == "first part "
    assert tail.startswith("[secretd: output withheld")
    assert "hunter2-long-value" not in tail
    assert fresh_start + fresh.feed("hunter2-long-value") + fresh.flush() == f"other stream {HIDDEN}"


def test_serialized_registry_holds_no_value(registry: SecretdSecretRegistry) -> None:
    registry.update_secrets({"API_KEY": "test-api-key-123", "DYNAMIC": DynamicSecret()})

    dumped = registry.model_dump_json()
    restored = SecretRegistry.model_validate_json(dumped)

    assert "test-api-key-123" not in dumped
    assert "test-api-key-123" not in repr(registry)
    assert set(restored.secret_sources) == {"API_KEY", "DYNAMIC"}


def test_public_names_exported() -> None:
    import secretd.client.openhands as package

    public = {
        name for name, value in vars(package).items() if not name.startswith("_") and not inspect.ismodule(value)
    }

    assert set(package.__all__) == public
    for name in package.__all__:
        assert getattr(package, name) is not None


def _values(registry: SecretdSecretRegistry) -> dict[str, Any]:
    return {name: source.get_value() for name, source in registry.secret_sources.items()}


def test_secret_sources_kept_as_sdk(registry: SecretdSecretRegistry) -> None:
    dynamic = DynamicSecret()
    registry.update_secrets({"API_KEY": "test-api-key-123", "DYNAMIC": dynamic})

    assert isinstance(registry.secret_sources["API_KEY"], StaticSecret)
    assert registry.secret_sources["DYNAMIC"] is dynamic
    assert _values(registry) == {"API_KEY": "test-api-key-123", "DYNAMIC": "dynamic-token-456"}
