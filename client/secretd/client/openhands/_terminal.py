"""The OpenHands terminal tool with secrets delivered through a named pipe and fail-closed masking."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from openhands.sdk.tool import ToolExecutor, register_tool
from openhands.tools.terminal.definition import TerminalAction, TerminalObservation, TerminalTool
from openhands.tools.terminal.env import ENV_VAR_NAME_RE
from openhands.tools.terminal.impl import TerminalExecutor
from openhands.tools.terminal.terminal.terminal_session import TerminalSession
from openhands.tools.terminal.terminal.tmux_pane_pool import DEFAULT_MAX_PANES

from ._pipe import DEFAULT_OPEN_TIMEOUT, PipeDirectory
from ._stream import withheld_notice

if TYPE_CHECKING:
    from openhands.sdk.conversation import LocalConversation
    from openhands.sdk.conversation.state import ConversationState

__all__ = ["SECRETD_TERMINAL_TOOL", "SecretdTerminalExecutor", "SecretdTerminalTool"]

logger = logging.getLogger("secretd.client.openhands")

#: Tool spec name of ``SecretdTerminalTool``: ``Tool(name=SECRETD_TERMINAL_TOOL)``.
SECRETD_TERMINAL_TOOL = "secretd_terminal"


class _PaneTextFilter(logging.Filter):
    """Replace the pane contents that libtmux logs at DEBUG with their line count.

    libtmux 0.62 puts the full stdout of every tmux command, screen captures
    included, in the ``tmux_stdout`` field of its "tmux command completed"
    record: unmasked terminal output, values printed by commands included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for field in ("tmux_stdout", "tmux_stderr"):
            lines = getattr(record, field, None)
            if isinstance(lines, list):
                setattr(record, field, f"[{len(lines)} lines not logged]")
        return True


def _install_pane_text_filter() -> None:
    libtmux_logger = logging.getLogger("libtmux.common")
    if not any(isinstance(existing, _PaneTextFilter) for existing in libtmux_logger.filters):
        libtmux_logger.addFilter(_PaneTextFilter())


def _uid_of(username: str) -> int:
    try:
        return pwd.getpwnam(username).pw_uid
    except KeyError:
        raise ValueError(f"unknown user {username!r} for the terminal's username option") from None


class SecretdTerminalExecutor(TerminalExecutor):
    """The SDK's terminal executor, changed in three ways.

    Secrets reach the shell through a named pipe that the shell sources, in
    place of ``export NAME=$'value'`` typed into the terminal.  So the tool
    puts no value in the shell's history or the tmux scrollback, although a
    command that prints one still does until the tool clears the pane.  An
    observation whose masking raises is withheld, where the SDK returns it
    unmasked.  And libtmux's DEBUG records no longer carry the pane
    contents.  Every other behaviour, tmux pane pool included, is the SDK's.
    """

    def __init__(
        self,
        working_dir: str,
        username: str | None = None,
        no_change_timeout_seconds: int | None = None,
        terminal_type: Literal["tmux", "subprocess", "powershell"] | None = None,
        shell_path: str | None = None,
        env: Mapping[str, str] | None = None,
        full_output_save_dir: str | None = None,
        max_panes: int = DEFAULT_MAX_PANES,
        *,
        pipe_timeout: float = DEFAULT_OPEN_TIMEOUT,
    ) -> None:
        if terminal_type == "powershell" or os.name != "posix":
            raise ValueError("SecretdTerminalExecutor needs a bash terminal (tmux or subprocess); PowerShell is not supported")
        owner = _uid_of(username) if username else None
        if owner is not None and owner != os.geteuid() and os.geteuid() != 0:
            raise ValueError(
                f"the terminal runs as {username!r} but this process is uid {os.geteuid()}: "
                "only root can hand that user the secret pipe; leave username unset"
            )
        # NOTE: the hand-over of the pipes to another user (root running the
        # terminal as ``username``) has no test: the tests run as one user.
        _install_pane_text_filter()
        self._pipes = PipeDirectory(owner)
        self._pipe_timeout = pipe_timeout
        try:
            super().__init__(
                working_dir,
                username=username,
                no_change_timeout_seconds=no_change_timeout_seconds,
                terminal_type=terminal_type,
                shell_path=shell_path,
                env=env,
                full_output_save_dir=full_output_save_dir,
                max_panes=max_panes,
            )
        except BaseException:
            self._pipes.close()
            raise

    def _export_envs(
        self,
        action: TerminalAction,
        conversation: LocalConversation | None = None,
        session: TerminalSession | None = None,
    ) -> None:
        """Deliver the secrets ``action`` references to the shell through a named pipe."""
        if not action.command.strip() or action.is_input or conversation is None:
            return
        try:
            env = conversation.state.secret_registry.get_secrets_as_env_vars(action.command)
        except Exception as exc:
            logger.error("resolving secrets failed, command runs without them: %s", type(exc).__name__)
            return
        valid = {name: value for name, value in env.items() if ENV_VAR_NAME_RE.match(name)}
        for name in env.keys() - valid.keys():
            logger.warning("secret %r is not a valid environment variable name, not exported", name)
        if not valid:
            return
        target = session or self.session
        with self._pipes.pipe(valid, timeout=self._pipe_timeout) as pipe:
            target.execute(TerminalAction(command=pipe.source_command, is_input=False, timeout=action.timeout))
        if not pipe.delivered:
            logger.error("the shell did not read the secrets (%s); command runs without them", pipe.error)

    def _mask_observation(
        self,
        observation: TerminalObservation,
        conversation: LocalConversation | None = None,
    ) -> TerminalObservation:
        """Mask the observation's text; withhold it when masking raises."""
        text = observation.text
        if not text or conversation is None:
            return observation
        try:
            masked = conversation.state.secret_registry.mask_secrets_in_output(text)
        except Exception as exc:
            logger.error("masking the terminal output failed, output withheld: %s", type(exc).__name__)
            masked = withheld_notice(f"the secret registry raised {type(exc).__name__}")
        data = observation.model_dump(exclude={"content", "full_output_save_dir"})
        return TerminalObservation.from_text(text=masked, full_output_save_dir=self.full_output_save_dir, **data)

    def close(self) -> None:
        """Close the terminal and remove the pipe directory."""
        try:
            super().close()
        finally:
            self._pipes.close()


class SecretdTerminalTool(TerminalTool):
    """The terminal tool, named ``terminal`` for the model, running ``SecretdTerminalExecutor``."""

    name: ClassVar[str] = TerminalTool.name

    @classmethod
    def create(
        cls,
        conv_state: ConversationState,
        username: str | None = None,
        no_change_timeout_seconds: int | None = None,
        terminal_type: Literal["tmux", "subprocess", "powershell"] | None = None,
        shell_path: str | None = None,
        executor: ToolExecutor | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Sequence[TerminalTool]:
        """Build the tool as ``TerminalTool.create`` does, with a ``SecretdTerminalExecutor``."""
        if executor is None:
            working_dir = conv_state.workspace.working_dir
            if not os.path.isdir(working_dir):
                raise ValueError(f"working_dir {working_dir!r} is not a directory")
            executor = SecretdTerminalExecutor(
                working_dir=working_dir,
                username=username,
                no_change_timeout_seconds=no_change_timeout_seconds,
                terminal_type=terminal_type,
                shell_path=shell_path,
                env=env,
                full_output_save_dir=conv_state.env_observation_persistence_dir,
            )
        return super().create(conv_state, executor=executor, env=env)


register_tool(SECRETD_TERMINAL_TOOL, SecretdTerminalTool)
