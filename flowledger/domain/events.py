"""The catalogue of execution events: what can happen to an execution, as facts.

The store records each event under its ``module:Class`` topic, so the names and this
module are permanent (rename only with ``class_version``/``upcast`` and a registered
topic). Every event carries ``prev_hash`` and ``hash``, its link in the hash chain, and
an ``apply`` that evolves the aggregate's recorded state
(:class:`~flowledger.domain.execution_state.ExecutionRecord`) directly: deterministic
and cheap, with no clock, ids, I/O or payload decoding. User payloads (input,
parameters, outputs) are canonical JSON *text*; errors are ``{"type", "message",
"retryable"}`` dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from flowledger.domain.canonical import encode_payload
from flowledger.domain.execution_state import ExecutionRecord, trigger_ids
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.domain.step_changes import note_step_change
from flowledger.domain.step_records import StepRecord, step_key, step_records_of, timeout_error
from flowledger.errors import CorruptRecordError


@dataclass(frozen=True)
class ExecutionEvent(Aggregate.Event):
    """Base of every execution event.

    Attributes:
        prev_hash: Hash of the event before this one (the chain's genesis for the
            first).
        hash: This event's hash (see :mod:`flowledger.domain.chain`).
        PAYLOADS: Fields that hold JSON text, decoded for readers.
    """

    prev_hash: str
    hash: str
    PAYLOADS: ClassVar[tuple[str, ...]] = ()

    def apply(self, aggregate: ExecutionRecord) -> None:
        """Evolve ``aggregate`` by this event and move its chain head."""
        self._evolve(aggregate)
        aggregate._chain_head = self.hash

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        """Evolve the aggregate's recorded state (nothing, unless overridden)."""


@dataclass(frozen=True)
class ExecutionStarted(ExecutionEvent, Aggregate.Created):
    """An execution started: the first event, holding the whole definition.

    Attributes:
        execution_id: The execution's public id.
        workflow_id: The definition's id.
        definition: The canonical definition, as JSON text.
        definition_hash: SHA-256 of ``definition``.
        input: The execution input, as JSON text.
    """

    execution_id: str
    workflow_id: str
    definition: str
    definition_hash: str
    input: str
    PAYLOADS: ClassVar[tuple[str, ...]] = ("definition", "input")

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._execution_id = self.execution_id
        aggregate._workflow_id = self.workflow_id
        aggregate._definition = self.definition
        aggregate._definition_hash = self.definition_hash
        aggregate._inputs = [self.input]
        try:
            aggregate._steps = step_records_of(self.definition)
        except (ValueError, KeyError, TypeError) as error:  # a damaged or forged record
            reason = f"its definition is not a workflow definition ({type(error).__name__})"
            raise CorruptRecordError(self.execution_id, 1, reason) from error
        aggregate._status = ExecutionStatus.RUNNING.value


@dataclass(frozen=True)
class ExecutionTransition(ExecutionEvent):
    """Base of events that move the execution to ``STATUS``."""

    STATUS: ClassVar[str]

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._status = self.STATUS
        aggregate._paused_on = None


@dataclass(frozen=True)
class InputProvided(ExecutionEvent):
    """Input was provided (deep-merged into the execution input)."""

    inputs: str
    actor: str | None
    PAYLOADS: ClassVar[tuple[str, ...]] = ("inputs",)

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._inputs.append(self.inputs)
        # A trigger's output is the execution input: completed triggers show the input
        # as provided so far, so a resumed run ends with the outputs of one that had
        # every input from the start (their StepCompleted events keep what they saw).
        triggers = trigger_ids(aggregate._definition)
        if not triggers:
            return
        merged = encode_payload(aggregate.execution_input())
        for step_id in triggers:
            record = aggregate._steps[step_key(step_id)]
            if record["status"] == StepStatus.COMPLETED.value:
                record["output"] = merged
                record["version"] = self.originator_version
                note_step_change(aggregate, step_id, self.originator_version)


@dataclass(frozen=True)
class ExecutionPaused(ExecutionTransition):
    """The execution paused, for a missing input or on request."""

    reason: str
    step_id: str | None
    missing_var: str | None
    actor: str | None
    STATUS: ClassVar[str] = ExecutionStatus.PAUSED.value

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        super()._evolve(aggregate)
        aggregate._paused_on = self.missing_var


@dataclass(frozen=True)
class ExecutionResumed(ExecutionTransition):
    """The execution resumed.

    ``reason`` was added later: events recorded before it do not hold it (they read it
    as None), and their hashes, taken without it, still verify.
    """

    actor: str | None
    reason: str | None = None
    STATUS: ClassVar[str] = ExecutionStatus.RUNNING.value


@dataclass(frozen=True)
class CancelRequested(ExecutionEvent):
    """Cancelling was asked for: nothing new is scheduled from here on."""

    reason: str
    actor: str | None
    rollback: bool

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._cancel_requested = True
        aggregate._cancel_rollback = self.rollback


@dataclass(frozen=True)
class ExecutionCancelled(ExecutionTransition):
    """The execution ended CANCELLED."""

    STATUS: ClassVar[str] = ExecutionStatus.CANCELLED.value


@dataclass(frozen=True)
class RollbackStarted(ExecutionTransition):
    """Completed steps are being compensated.

    ``step_id`` and ``error`` name the failure that started the rollback (None for a
    cancel that rolls back); the execution's ``error`` shows it from here on.
    """

    reason: str
    step_id: str | None
    error: dict[str, Any] | None
    STATUS: ClassVar[str] = ExecutionStatus.ROLLING_BACK.value

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        super()._evolve(aggregate)
        aggregate._error = self.error


@dataclass(frozen=True)
class ExecutionRolledBack(ExecutionTransition):
    """Every compensation finished: the execution ended ROLLED_BACK."""

    STATUS: ClassVar[str] = ExecutionStatus.ROLLED_BACK.value


@dataclass(frozen=True)
class ExecutionCompleted(ExecutionTransition):
    """The execution ended COMPLETED."""

    outputs: str
    STATUS: ClassVar[str] = ExecutionStatus.COMPLETED.value
    PAYLOADS: ClassVar[tuple[str, ...]] = ("outputs",)


@dataclass(frozen=True)
class _FailedTransition(ExecutionTransition):
    """A transition that records why the execution failed."""

    step_id: str | None
    error: dict[str, Any]

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        super()._evolve(aggregate)
        aggregate._error = self.error


@dataclass(frozen=True)
class RollbackFailed(_FailedTransition):
    """A compensation failed: the execution ended ROLLBACK_FAILED."""

    STATUS: ClassVar[str] = ExecutionStatus.ROLLBACK_FAILED.value


@dataclass(frozen=True)
class ExecutionFailed(_FailedTransition):
    """The execution ended FAILED."""

    STATUS: ClassVar[str] = ExecutionStatus.FAILED.value


@dataclass(frozen=True)
class ConditionEvaluated(ExecutionEvent):
    """A condition was evaluated; ``value`` is its truth (which branch was taken).

    Attributes:
        source: The step the edge leaves, or None for a step's own guard.
        target: The step the condition guards.
        condition: The expression, or None for an unconditional edge.
        value: The boolean the condition came to.
    """

    source: str | None
    target: str
    condition: str | None
    value: bool


@dataclass(frozen=True)
class StepEvent(ExecutionEvent):
    """Base of events that move one step to ``STATUS``."""

    step_id: str
    STATUS: ClassVar[str]

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        record = aggregate._changing_step(self.step_id, self.originator_version)
        record["status"] = self.STATUS
        record["version"] = self.originator_version
        self._update(record)

    def _update(self, record: StepRecord) -> None:
        """Update the step's record beyond its status (nothing, unless overridden)."""

    def _finish(self, record: StepRecord) -> None:
        # The step came to rest: a later start is a new attempt, not a restart.
        record["finished_at"] = self.timestamp
        record["interrupted"] = False


@dataclass(frozen=True)
class StepStarted(StepEvent):
    """An attempt of a step started, with its resolved parameters (JSON text)."""

    attempt: int
    parameters: str
    STATUS: ClassVar[str] = StepStatus.RUNNING.value
    PAYLOADS: ClassVar[tuple[str, ...]] = ("parameters",)

    def _update(self, record: StepRecord) -> None:
        # A new attempt: the previous one's error, wait and reason no longer apply.
        record["attempts"] = self.attempt
        record["started_at"] = self.timestamp
        record["error"] = None
        record["not_before"] = None
        record["reason"] = None
        record["interrupted"] = False


@dataclass(frozen=True)
class StepCompleted(StepEvent):
    """An attempt returned ``output`` (JSON text)."""

    attempt: int
    output: str
    duration_ms: float
    STATUS: ClassVar[str] = StepStatus.COMPLETED.value
    PAYLOADS: ClassVar[tuple[str, ...]] = ("output",)

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        super()._evolve(aggregate)
        aggregate._completed.append(self.step_id)

    def _update(self, record: StepRecord) -> None:
        record["output"] = self.output
        record["duration_ms"] = self.duration_ms
        self._finish(record)


@dataclass(frozen=True)
class StepFailed(StepEvent):
    """An attempt raised ``error``; ``retryable`` says whether another may follow."""

    attempt: int
    error: dict[str, Any]
    retryable: bool
    duration_ms: float
    STATUS: ClassVar[str] = StepStatus.FAILED.value

    def _update(self, record: StepRecord) -> None:
        record["error"] = self.error
        record["duration_ms"] = self.duration_ms
        self._finish(record)


@dataclass(frozen=True)
class StepRetryScheduled(StepEvent):
    """Attempt ``next_attempt`` may start at ``not_before``; the step stays FAILED."""

    next_attempt: int
    not_before: datetime
    STATUS: ClassVar[str] = StepStatus.FAILED.value

    def _update(self, record: StepRecord) -> None:
        record["not_before"] = self.not_before


@dataclass(frozen=True)
class StepTimedOut(StepEvent):
    """An attempt ran longer than ``timeout`` seconds: a retryable failure."""

    attempt: int
    timeout: float
    STATUS: ClassVar[str] = StepStatus.FAILED.value

    def _update(self, record: StepRecord) -> None:
        record["error"] = timeout_error(self.step_id, self.timeout)
        # The engine stopped waiting; how long the action really ran is unknown.
        record["duration_ms"] = None
        self._finish(record)


@dataclass(frozen=True)
class StepSkipped(StepEvent):
    """The step will not run (for example ``branch_not_taken``)."""

    reason: str
    STATUS: ClassVar[str] = StepStatus.SKIPPED.value

    def _update(self, record: StepRecord) -> None:
        record["reason"] = self.reason
        self._finish(record)


@dataclass(frozen=True)
class StepPaused(StepEvent):
    """The step waits for ``missing_var``."""

    missing_var: str
    STATUS: ClassVar[str] = StepStatus.PAUSED.value

    def _update(self, record: StepRecord) -> None:
        record["reason"] = self.missing_var
        self._finish(record)


@dataclass(frozen=True)
class StepInterrupted(StepEvent):
    """Attempt ``attempt`` was found RUNNING after a crash; it will be restarted."""

    attempt: int
    STATUS: ClassVar[str] = StepStatus.RUNNING.value

    def _update(self, record: StepRecord) -> None:
        record["interrupted"] = True


@dataclass(frozen=True)
class StepCancelled(StepEvent):
    """The step was cancelled."""

    reason: str
    STATUS: ClassVar[str] = StepStatus.CANCELLED.value

    def _update(self, record: StepRecord) -> None:
        record["reason"] = self.reason
        self._finish(record)


@dataclass(frozen=True)
class CompensationStarted(StepEvent):
    """The step's compensating action started."""

    STATUS: ClassVar[str] = StepStatus.COMPENSATING.value


@dataclass(frozen=True)
class StepRolledBack(StepEvent):
    """The step was compensated; ``output`` (JSON text) is what the compensation returned."""

    output: str
    STATUS: ClassVar[str] = StepStatus.ROLLED_BACK.value
    PAYLOADS: ClassVar[tuple[str, ...]] = ("output",)

    def _update(self, record: StepRecord) -> None:
        record["compensation_output"] = self.output
        self._finish(record)


@dataclass(frozen=True)
class CompensationFailed(StepEvent):
    """The step's compensating action raised ``error``."""

    error: dict[str, Any]
    STATUS: ClassVar[str] = StepStatus.COMPENSATION_FAILED.value

    def _update(self, record: StepRecord) -> None:
        record["error"] = self.error
        self._finish(record)
