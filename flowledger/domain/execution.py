"""The ``Execution`` aggregate: one execution of a workflow, as a history of events.

Commands are public, undecorated methods. Each one takes every value that varies (the
time ``at``, outputs, durations, ids) as an argument, checks the lifecycle tables and
its guards *before* anything happens, then computes the event's hash and triggers it
with ``timestamp=at``. An illegal command raises
:class:`~flowledger.errors.InvalidTransitionError` and records and changes nothing.
Replaying the events (``apply``) never reads a clock, makes an id or does I/O, so it
always rebuilds the same aggregate. What the aggregate records, and its queries, are in
:mod:`flowledger.domain.execution_state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.utils import get_topic

from flowledger.domain import events as ev
from flowledger.domain.canonical import encode_payload
from flowledger.domain.chain import GENESIS, chained
from flowledger.domain.data_protection import DataProtection
from flowledger.domain.definition.model import WorkflowDefinition
from flowledger.domain.execution_state import NON_TERMINAL, aware
from flowledger.domain.interventions import Interventions
from flowledger.domain.lease_commands import Leasing
from flowledger.domain.sealing import PayloadGuard, guard, seal_payloads
from flowledger.domain.snapshot import ExecutionSnapshot
from flowledger.domain.status import ExecutionStatus
from flowledger.domain.step_records import step_key
from flowledger.errors import InvalidTransitionError

EXECUTION_NAMESPACE = UUID("6f1c1b0e-4d5a-5b8e-9c1f-2a7d3e8b9c40")
"""Namespace of the UUIDs derived from execution ids that are not UUIDs (never change)."""

_ACTIVE = frozenset({ExecutionStatus.RUNNING.value})
_SCHEDULING = frozenset({ExecutionStatus.RUNNING.value, ExecutionStatus.PAUSED.value})
_ROLLBACK = frozenset({ExecutionStatus.ROLLING_BACK.value})


@lru_cache(maxsize=4096)
def execution_uuid(execution_id: str) -> UUID:
    """Return the aggregate id of an execution id.

    A canonical UUID string (lower case, hyphenated) maps to that UUID; any other key
    to a UUID derived from it, so every key names exactly one aggregate.
    """
    try:
        candidate = UUID(execution_id)
    except ValueError:
        return uuid5(EXECUTION_NAMESPACE, execution_id)
    if str(candidate) == execution_id:
        return candidate
    return uuid5(EXECUTION_NAMESPACE, execution_id)


def error_data(error: Mapping[str, Any]) -> dict[str, Any]:
    """Return error data as recorded: exactly ``type``, ``message`` and ``retryable``.

    Raises:
        ValueError: A key is missing.
    """
    try:
        return {
            "type": str(error["type"]),
            "message": str(error["message"]),
            "retryable": bool(error["retryable"]),
        }
    except KeyError as missing:
        msg = f"error data needs 'type', 'message' and 'retryable'; {missing} is missing"
        raise ValueError(msg) from None


def json_object(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return an input payload, refusing anything but a mapping (None is ``{}``).

    Raises:
        TypeError: ``value`` is not a mapping.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = f"input must be a JSON object (a mapping), not {type(value).__name__}"
        raise TypeError(msg)
    return value


class Execution(Interventions, DataProtection, Leasing):
    """One execution of a workflow definition.

    Create it with :meth:`start`; read it with :meth:`state`. No ``transitions``
    machine is attached: the lifecycle tables are consulted before each event.
    """

    # The events live in their own module (stable topics); naming them here makes
    # eventsourcing use them as they are instead of deriving classes of its own, and
    # makes ``Execution(...)`` without ``start`` impossible. mypy refuses to let an
    # assignment override a nested class, though the types are compatible.
    Event = ev.ExecutionEvent  # type: ignore[assignment]
    Created = ev.ExecutionStarted  # type: ignore[assignment]
    Snapshot = ExecutionSnapshot

    @classmethod
    def start(
        cls,
        execution_id: str,
        definition: WorkflowDefinition,
        input: Mapping[str, Any] | None,
        at: datetime,
        payload_guard: PayloadGuard | None = None,
    ) -> Execution:
        """Start an execution of ``definition``; it is RUNNING.

        Args:
            execution_id: The public id (any string; see :func:`execution_uuid`).
            definition: The workflow; its canonical form is recorded whole.
            input: The execution input (None for none).
            at: When it started (timezone-aware).
            payload_guard: Seals the personal parts of the input, and of every payload
                recorded after it (see :mod:`flowledger.domain.sealing`).

        Raises:
            ValueError: ``at`` is naive, or ``definition.hash`` is not the hash of its
                canonical form.
            TypeError: ``input`` is not a mapping of JSON data.
        """
        text, text_hash = definition.canonical()
        if text_hash != definition.hash:
            msg = f"definition {definition.id!r} has a hash that is not of its canonical form"
            raise ValueError(msg)
        fields = {
            "originator_topic": get_topic(cls),
            "execution_id": execution_id,
            "workflow_id": definition.id,
            "definition": text,
            "definition_hash": definition.hash,
            "input": encode_payload(json_object(input)),
        }
        if payload_guard is not None:
            fields.update(seal_payloads(payload_guard, ev.ExecutionStarted, fields))
        uuid = execution_uuid(execution_id)
        linked = chained(
            ev.ExecutionStarted.__name__,
            fields,
            prev_hash=GENESIS,
            originator_id=str(uuid),
            version=1,
            timestamp=aware(at),
        )
        execution = cls._create(ev.ExecutionStarted, id=uuid, timestamp=at, **linked)
        if payload_guard is not None:
            guard(execution, payload_guard)
        return execution

    # -- step commands ----------------------------------------------------------------
    # Each raises InvalidTransitionError when the step's lifecycle or the execution's
    # status does not allow it (an unknown step is in state UNDEFINED), and ValueError
    # for a naive ``at``; in both cases nothing is recorded.

    def start_step(self, step_id: str, parameters: Mapping[str, Any], at: datetime) -> None:
        """Start the next attempt of a step with its resolved ``parameters``.

        Only while the execution is RUNNING and no cancel was requested; a RUNNING step
        only after :meth:`interrupt_step`. Restarting an interrupted step runs the same
        attempt again: a crash does not use up the step's retries, so a recovered run
        ends as an uninterrupted one would.
        """
        record = self._steps.get(step_key(step_id))
        restart = record is not None and record["interrupted"]
        record = self._check_step(
            step_id, "restart" if restart else "start", at, _ACTIVE, new_work=True
        )
        self._append(
            ev.StepStarted,
            at,
            step_id=step_id,
            attempt=record["attempts"] if restart else record["attempts"] + 1,
            parameters=encode_payload(parameters),
        )

    def complete_step(self, step_id: str, output: Any, duration_ms: float, at: datetime) -> None:
        """Record that the running attempt returned ``output``."""
        record = self._check_step(step_id, "complete", at)
        self._append(
            ev.StepCompleted,
            at,
            step_id=step_id,
            attempt=record["attempts"],
            output=encode_payload(output),
            duration_ms=float(duration_ms),
        )

    def fail_step(
        self,
        step_id: str,
        error: Mapping[str, Any],
        retryable: bool,
        duration_ms: float,
        at: datetime,
    ) -> None:
        """Record that the running attempt raised ``error`` (``retryable``: may retry)."""
        record = self._check_step(step_id, "fail", at)
        self._append(
            ev.StepFailed,
            at,
            step_id=step_id,
            attempt=record["attempts"],
            error=error_data(error),
            retryable=bool(retryable),
            duration_ms=float(duration_ms),
        )

    def time_out_step(self, step_id: str, timeout: float, at: datetime) -> None:
        """Record that the running attempt exceeded ``timeout`` seconds (a failure)."""
        record = self._check_step(step_id, "time_out", at)
        self._append(
            ev.StepTimedOut,
            at,
            step_id=step_id,
            attempt=record["attempts"],
            timeout=float(timeout),
        )

    def schedule_retry(self, step_id: str, not_before: datetime, at: datetime) -> None:
        """Record that a FAILED step's next attempt may start at ``not_before``."""
        record = self._check_step(step_id, "schedule_retry", at, _SCHEDULING, new_work=True)
        self._append(
            ev.StepRetryScheduled,
            at,
            step_id=step_id,
            next_attempt=record["attempts"] + 1,
            not_before=aware(not_before, "not_before"),
        )

    def skip_step(self, step_id: str, reason: str, at: datetime) -> None:
        """Record that a PENDING step will not run (for example ``branch_not_taken``)."""
        self._check_step(step_id, "skip", at)
        self._append(ev.StepSkipped, at, step_id=step_id, reason=reason)

    def pause_step(self, step_id: str, missing_var: str, at: datetime) -> None:
        """Record that a step waits for the input ``missing_var``."""
        self._check_step(step_id, "pause", at)
        self._append(ev.StepPaused, at, step_id=step_id, missing_var=missing_var)

    def interrupt_step(self, step_id: str, at: datetime) -> None:
        """Record that a step was found RUNNING after a crash, so it may be restarted."""
        record = self._check_step(step_id, "interrupt", at)
        self._append(ev.StepInterrupted, at, step_id=step_id, attempt=record["attempts"])

    def cancel_step(self, step_id: str, reason: str, at: datetime) -> None:
        """Record that a step was cancelled."""
        self._check_step(step_id, "cancel", at)
        self._append(ev.StepCancelled, at, step_id=step_id, reason=reason)

    def start_compensation(self, step_id: str, at: datetime) -> None:
        """Record that a COMPLETED step's compensation started (while ROLLING_BACK).

        Only a step whose definition declares ``compensate`` can be compensated.
        """
        record = self._check_step(step_id, "compensate", at, _ROLLBACK)
        if step_id not in self._compensable():
            state = f"{record['status']} (no compensate)"
            raise InvalidTransitionError("step", state, "compensate", step_id)
        self._append(ev.CompensationStarted, at, step_id=step_id)

    def roll_back_step(self, step_id: str, output: Any, at: datetime) -> None:
        """Record that a step was compensated; ``output`` is the compensation's."""
        self._check_step(step_id, "roll_back", at, _ROLLBACK)
        self._append(ev.StepRolledBack, at, step_id=step_id, output=encode_payload(output))

    def fail_compensation(self, step_id: str, error: Mapping[str, Any], at: datetime) -> None:
        """Record that a step's compensation raised ``error``."""
        self._check_step(step_id, "fail_compensation", at, _ROLLBACK)
        self._append(ev.CompensationFailed, at, step_id=step_id, error=error_data(error))

    def record_condition(
        self, source: str | None, target: str, condition: str | None, value: bool, at: datetime
    ) -> None:
        """Record the boolean a condition came to on the edge ``source -> target``."""
        self._require("record_condition", at, NON_TERMINAL)
        for step_id in (source, target):
            if step_id is not None:
                self._record_of(step_id, "record_condition")
        self._append(
            ev.ConditionEvaluated,
            at,
            source=source,
            target=target,
            condition=condition,
            value=bool(value),
        )

    # -- execution commands -----------------------------------------------------------

    def provide_input(self, inputs: Mapping[str, Any], actor: str | None, at: datetime) -> None:
        """Record input provided later; it is deep-merged into the execution input."""
        self._require("provide_input", at, NON_TERMINAL)
        self._append(ev.InputProvided, at, inputs=encode_payload(json_object(inputs)), actor=actor)

    def pause(
        self,
        reason: str,
        at: datetime,
        step_id: str | None = None,
        missing_var: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Pause the RUNNING execution, for a missing input or on request."""
        self._transition("pause", at, step_id)
        self._append(
            ev.ExecutionPaused,
            at,
            reason=reason,
            step_id=step_id,
            missing_var=missing_var,
            actor=actor,
        )

    def resume(self, actor: str | None, at: datetime, reason: str | None = None) -> None:
        """Resume the PAUSED execution (``reason``: why, when an operator resumed it)."""
        self._transition("resume", at)
        self._append(ev.ExecutionResumed, at, actor=actor, reason=reason)

    def request_cancel(
        self, reason: str, actor: str | None, at: datetime, rollback: bool = False
    ) -> None:
        """Ask, once, for a running execution to end CANCELLED (rolling back if asked).

        In-flight steps still finish and are recorded; nothing new starts.
        """
        self._require("request_cancel", at, NON_TERMINAL, new_work=True)
        self._append(ev.CancelRequested, at, reason=reason, actor=actor, rollback=bool(rollback))

    def cancel(self, at: datetime) -> None:
        """End the execution CANCELLED, once a cancel was requested."""
        self._transition("cancel", at)
        if not self._cancel_requested:
            raise InvalidTransitionError("execution", self._status, "cancel", self._execution_id)
        self._append(ev.ExecutionCancelled, at)

    def start_rollback(
        self,
        reason: str,
        at: datetime,
        step_id: str | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        """Start compensating completed steps (see :meth:`steps_to_compensate`).

        ``step_id`` and ``error`` name the failure that caused it (None for a cancel).
        """
        self._transition("start_rollback", at, step_id)
        self._append(
            ev.RollbackStarted,
            at,
            reason=reason,
            step_id=step_id,
            error=None if error is None else error_data(error),
        )

    def finish_rollback(self, at: datetime) -> None:
        """End the execution ROLLED_BACK."""
        self._transition("finish_rollback", at)
        self._append(ev.ExecutionRolledBack, at)

    def fail_rollback(self, step_id: str | None, error: Mapping[str, Any], at: datetime) -> None:
        """End the execution ROLLBACK_FAILED: compensating ``step_id`` raised ``error``."""
        self._transition("fail_rollback", at, step_id)
        self._append(ev.RollbackFailed, at, step_id=step_id, error=error_data(error))

    def complete(self, outputs: Any, at: datetime) -> None:
        """End the execution COMPLETED with ``outputs`` (recorded as given)."""
        self._transition("complete", at)
        self._append(ev.ExecutionCompleted, at, outputs=encode_payload(outputs))

    def fail(self, step_id: str | None, error: Mapping[str, Any], at: datetime) -> None:
        """End the execution FAILED, because of ``step_id`` (None: not one step's fault)."""
        self._transition("fail", at, step_id)
        self._append(ev.ExecutionFailed, at, step_id=step_id, error=error_data(error))
