"""The aggregate commands behind the engine's operator methods, and their governance.

Every operator action is recorded on the execution with who acted and why: cancel
(``CancelRequested``), pause (``ExecutionPaused``), resume (``ExecutionResumed``),
retry from a failure (``ExecutionRetried``) and skip (``StepSkippedByOperator``). Retry
and skip always need an actor and a reason. A *governed* engine needs them for every
action, and refuses one without them before anything is recorded; an engine that is not
governed records cancel, pause and resume with what it is given (the reason defaults
to ``cancelled`` and ``requested``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowledger.domain.execution import Execution
from flowledger.domain.interventions import accountable
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.runner_services import Command
from flowledger.errors import InvalidTransitionError

DEFAULT_CANCEL_REASON = "cancelled"
"""The reason recorded for a cancel that gives none (engines that are not governed)."""

DEFAULT_PAUSE_REASON = "requested"
"""The reason recorded for a pause that gives none (engines that are not governed)."""


@dataclass(frozen=True)
class OperatorCommands:
    """Builds operators' commands, checking their actor and reason first.

    Attributes:
        governed: Every action must name an actor and a reason.
    """

    governed: bool = False

    def _accountable(
        self, action: str, actor: str | None, reason: str | None
    ) -> tuple[str | None, str | None]:
        """Return actor and reason as recorded; refused when governed and one is missing."""
        if self.governed:
            return accountable(action, actor, reason)
        return actor, reason

    def cancel(self, reason: str | None, actor: str | None, rollback: bool) -> Command:
        """Return the command that asks for a cancel (see ``cancel_workflow``)."""
        actor, reason = self._accountable("cancel", actor, reason)
        recorded = reason or DEFAULT_CANCEL_REASON

        def command(execution: Execution, at: datetime) -> None:
            execution.request_cancel(recorded, actor, at, rollback=rollback)

        return command

    def pause(self, reason: str | None, actor: str | None) -> Command:
        """Return the command that pauses an execution (see ``pause_workflow``)."""
        actor, reason = self._accountable("pause", actor, reason)
        recorded = reason or DEFAULT_PAUSE_REASON

        def command(execution: Execution, at: datetime) -> None:
            execution.pause(recorded, at, actor=actor)

        return command

    def resume(
        self, inputs: Mapping[str, Any] | None, actor: str | None, reason: str | None
    ) -> Command:
        """Return the command that provides ``inputs`` and resumes (see ``resume_workflow``)."""
        actor, reason = self._accountable("resume", actor, reason)

        def command(execution: Execution, at: datetime) -> None:
            if execution.status is not ExecutionStatus.PAUSED:
                # Refused before the inputs are recorded: a refused resume records nothing.
                raise InvalidTransitionError(
                    "execution", execution.status.value, "resume", execution.execution_id
                )
            if inputs:
                execution.provide_input(inputs, actor, at)
            execution.resume(actor, at, reason=reason)

        return command

    @staticmethod
    def retry(actor: str, reason: str) -> Command:
        """Return the command that retries a FAILED execution from its failure."""
        actor, reason = accountable("retry", actor, reason)

        def command(execution: Execution, at: datetime) -> None:
            execution.retry_from_failure(actor, reason, at)

        return command

    @staticmethod
    def skip(step_id: str, actor: str, reason: str, output: Any = None) -> Command:
        """Return the command that skips one step (the steps after it run)."""
        actor, reason = accountable("skip", actor, reason)

        def command(execution: Execution, at: datetime) -> None:
            execution.skip_by_operator(step_id, actor, reason, at, output=output)

        return command
