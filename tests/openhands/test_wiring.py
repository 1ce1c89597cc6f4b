"""``use_secretd`` on real conversations: existing secrets, the system prompt, saved and resumed state."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openhands.sdk", reason="needs openhands-sdk (Python 3.12+): run make test-openhands")

from openhands.sdk import LLM, Agent, Conversation  # noqa: E402
from openhands.sdk.conversation import LocalConversation  # noqa: E402
from openhands.sdk.conversation.secret_registry import SecretRegistry  # noqa: E402
from openhands.sdk.secret import StaticSecret  # noqa: E402
from openhands.sdk.utils.cipher import Cipher  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from secretd.client.openhands import SecretdSecretRegistry, use_secretd  # noqa: E402

from ..conftest import Daemon  # noqa: E402

pytestmark = pytest.mark.openhands

API_KEY = "sk-wiring-api-key-5566778899"


def _agent() -> Agent:
    return Agent(llm=LLM(model="openai/unused-model", api_key=SecretStr("unused"), usage_id="test"), tools=[])


def test_existing_secrets_move_to_daemon(daemon: Daemon, tmp_path: Path) -> None:
    local = Conversation(agent=_agent(), workspace=str(tmp_path), visualizer=None, secrets={"API_KEY": API_KEY})
    local.state.secret_registry.get_secret_value("API_KEY")

    registry = use_secretd(local, socket_path=daemon.socket_path)
    try:
        assert local.state.secret_registry is registry
        assert registry.get_secrets_as_env_vars("echo $API_KEY") == {"API_KEY": API_KEY}
        with daemon.client() as observer:
            assert observer.mask(registry.conversation.scope, API_KEY.encode()) == b"<secret-hidden>"
    finally:
        registry.close()
        local.close()


def test_prompt_lists_daemon_secrets(daemon: Daemon, tmp_path: Path) -> None:
    local = Conversation(agent=_agent(), workspace=str(tmp_path), visualizer=None)
    registry = use_secretd(local, socket_path=daemon.socket_path)
    try:
        local.update_secrets({"API_KEY": StaticSecret(value=SecretStr(API_KEY), description="the billing API key")})

        prompt = local.agent.get_dynamic_context(local.state)

        assert prompt is not None
        assert "API_KEY" in prompt
        assert "the billing API key" in prompt
        assert API_KEY not in prompt
    finally:
        registry.close()
        local.close()


def test_saved_state_holds_no_value(daemon: Daemon, tmp_path: Path) -> None:
    persistence = tmp_path / "state"
    local = Conversation(agent=_agent(), workspace=str(tmp_path), persistence_dir=str(persistence), visualizer=None)
    registry = use_secretd(local, socket_path=daemon.socket_path)
    try:
        local.update_secrets({"API_KEY": API_KEY})
        local.state.tags = {"saved": "yes"}  # a change of any field saves the state

        saved = "\n".join(path.read_text() for path in persistence.rglob("*.json"))

        assert '"API_KEY"' in saved
        assert API_KEY not in saved
    finally:
        registry.close()
        local.close()


def test_resumed_conversation_registers_again(daemon: Daemon, tmp_path: Path) -> None:
    persistence = tmp_path / "state"
    cipher = Cipher(secrets.token_urlsafe(48))
    conversation_id = uuid.uuid4()
    options: dict[str, Any] = {
        "workspace": str(tmp_path), "persistence_dir": str(persistence), "conversation_id": conversation_id,
        "visualizer": None, "delete_on_close": False,
    }
    first = LocalConversation(agent=_agent(), cipher=cipher, **options)
    registry = use_secretd(first, socket_path=daemon.socket_path)
    first.update_secrets({"API_KEY": API_KEY})
    first.state.tags = {"saved": "yes"}
    registry.close()
    first.close()

    resumed = LocalConversation(agent=_agent(), cipher=cipher, **options)
    assert type(resumed.state.secret_registry) is SecretRegistry
    registry = use_secretd(resumed, socket_path=daemon.socket_path)
    try:
        assert isinstance(resumed.state.secret_registry, SecretdSecretRegistry)
        assert registry.get_secrets_as_env_vars("echo $API_KEY") == {"API_KEY": API_KEY}
    finally:
        registry.close()
        resumed.close()
