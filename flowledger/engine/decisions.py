"""What the planner decides: one value per aggregate command, and the plan holding them.

:func:`flowledger.engine.planning.plan` returns a :class:`Plan`, an ordered tuple of
decisions. Each decision is a frozen value that maps to exactly one ``Execution``
command (two for :class:`CompleteTrigger`), and :meth:`apply` records it: applying a
plan's decisions in order, with one timestamp, is always legal for the state it was
planned from. Two decisions also ask the engine to run something once they are
recorded: :class:`StartStep` (the step's action) and :class:`CompensateStep` (its
compensating action); their ``runs_action`` is True.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeAlias

from flowledger.domain.execution import Execution

MISSING_INPUT = "missing_input"
"""Reason of the pause recorded by :class:`PauseExecution`."""


@dataclass(frozen=True, slots=True)
class RecordCondition:
    """Record the value a condition came to (``ConditionEvaluated``).

    Attributes:
        source: The step the edge leaves, or None for the target's own guard.
        target: The step the condition decides.
        condition: The expression, as written.
        value: Its truth.
    """

    source: str | None
    target: str
    condition: str
    value: bool
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.record_condition(self.source, self.target, self.condition, self.value, at)


@dataclass(frozen=True, slots=True)
class SkipStep:
    """Skip a PENDING step: ``branch_not_taken`` or ``condition_false``."""

    step_id: str
    reason: str
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.skip_step(self.step_id, self.reason, at)


@dataclass(frozen=True, slots=True)
class StartStep:
    """Start the next attempt of a step; the engine then runs its action.

    Attributes:
        step_id: The step.
        parameters: Its parameters with every reference resolved: the action's
            keyword arguments, a plain copy the action may change.
    """

    step_id: str
    parameters: dict[str, Any]
    runs_action: ClassVar[bool] = True

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.start_step(self.step_id, self.parameters, at)


@dataclass(frozen=True, slots=True)
class CompleteTrigger:
    """Run a trigger node: it starts and completes at once, its output the execution input."""

    step_id: str
    output: dict[str, Any]
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at`` (a start and a completion)."""
        execution.start_step(self.step_id, {}, at)
        execution.complete_step(self.step_id, self.output, 0.0, at)


@dataclass(frozen=True, slots=True)
class PauseStep:
    """Pause a PENDING step whose parameters reference the missing ``missing_var``."""

    step_id: str
    missing_var: str
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.pause_step(self.step_id, self.missing_var, at)


@dataclass(frozen=True, slots=True)
class PauseExecution:
    """Pause the execution until ``missing_var`` is provided (always a plan's last decision).

    Attributes:
        step_id: The first step found waiting for input.
        missing_var: The reference it could not resolve, e.g. ``input.name``.
    """

    step_id: str
    missing_var: str
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.pause(MISSING_INPUT, at, step_id=self.step_id, missing_var=self.missing_var)


@dataclass(frozen=True, slots=True)
class CancelStep:
    """Cancel a PENDING or PAUSED step: ``cancelled`` or ``execution_failed``."""

    step_id: str
    reason: str
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.cancel_step(self.step_id, self.reason, at)


@dataclass(frozen=True, slots=True)
class CancelExecution:
    """End the execution CANCELLED, as requested."""

    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.cancel(at)


@dataclass(frozen=True, slots=True)
class StartRollback:
    """Start compensating completed steps, for ``reason``.

    ``step_id`` and ``error`` name the failure that caused it (None for a cancel).
    """

    reason: str
    step_id: str | None = None
    error: dict[str, Any] | None = None
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.start_rollback(self.reason, at, self.step_id, self.error)


@dataclass(frozen=True, slots=True)
class CompensateStep:
    """Start compensating a step; the engine then runs ``action`` with ``parameters``.

    The engine records the outcome with ``roll_back_step`` or ``fail_compensation``.

    Attributes:
        step_id: The step to undo.
        action: The compensating action.
        parameters: Its parameters, resolved (they may read the step's own output).
    """

    step_id: str
    action: str
    parameters: dict[str, Any]
    runs_action: ClassVar[bool] = True

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.start_compensation(self.step_id, at)


@dataclass(frozen=True, slots=True)
class FinishRollback:
    """End the execution ROLLED_BACK: every compensation succeeded."""

    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.finish_rollback(at)


@dataclass(frozen=True, slots=True)
class FailRollback:
    """End the execution ROLLBACK_FAILED: compensating ``step_id`` failed with ``error``."""

    step_id: str
    error: dict[str, Any]
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.fail_rollback(self.step_id, self.error, at)


@dataclass(frozen=True, slots=True)
class CompleteExecution:
    """End the execution COMPLETED; ``outputs`` maps each completed step to its output."""

    outputs: dict[str, Any]
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.complete(self.outputs, at)


@dataclass(frozen=True, slots=True)
class FailExecution:
    """End the execution FAILED because of ``step_id``; ``error`` is error data."""

    step_id: str
    error: dict[str, Any]
    runs_action: ClassVar[bool] = False

    def apply(self, execution: Execution, at: datetime) -> None:
        """Record the decision on ``execution`` at ``at``."""
        execution.fail(self.step_id, self.error, at)


Decision: TypeAlias = (
    RecordCondition
    | SkipStep
    | StartStep
    | CompleteTrigger
    | PauseStep
    | PauseExecution
    | CancelStep
    | CancelExecution
    | StartRollback
    | CompensateStep
    | FinishRollback
    | FailRollback
    | CompleteExecution
    | FailExecution
)
"""Any decision of a plan."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What happens next to one execution.

    Attributes:
        decisions: To apply in order, all with the same timestamp. Applying them and
            planning again never repeats one.
        wake_at: The earliest time a scheduled retry may start that has not come yet,
            or None: with nothing else to do, the engine plans again then.
        in_flight: Steps whose outcome the engine is to record (RUNNING or
            COMPENSATING), in definition order, before this plan's decisions.
        replan: True when planning again right after applying this plan may decide
            more (the plan holds only the first part of what is due). When False,
            planning again at the same time, with the starts left and the interrupted
            steps not started, decides nothing.
        withheld: True when a step or compensation was due to start but ``max_starts``
            left it undecided: the engine waits for a slot, then plans again.
    """

    decisions: tuple[Decision, ...] = ()
    wake_at: datetime | None = None
    in_flight: tuple[str, ...] = ()
    replan: bool = False
    withheld: bool = False

    @property
    def idle(self) -> bool:
        """True when nothing was decided and an in-flight step's outcome is awaited."""
        return not self.decisions and bool(self.in_flight)

    @property
    def settled(self) -> bool:
        """True when only an outside command can change the execution.

        That is: nothing decided, nothing in flight, no retry to wait for; the
        execution is terminal or PAUSED.
        """
        return not self.decisions and not self.in_flight and self.wake_at is None

    def apply(self, execution: Execution, at: datetime) -> None:
        """Apply every decision to ``execution``, in order, at ``at``."""
        for decision in self.decisions:
            decision.apply(execution, at)
