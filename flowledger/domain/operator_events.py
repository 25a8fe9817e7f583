"""Operators' interventions that change what runs: retry after a failure, and skip.

Each records who acted (``actor``) and why (``reason``), so the audit timeline shows
every intervention. Cancel, pause and resume are recorded by their own events in
:mod:`flowledger.domain.events` with the same two fields. Kept apart from that module
(the same permanence applies: the store records each class by its ``module:Class``
topic).

A retry or a skip of a FAILED execution *reopens* it: the execution is RUNNING again,
its error is cleared, and the steps its failure cancelled before they ran are PENDING
again. Only these recorded interventions leave a terminal status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from flowledger.domain.events import ExecutionEvent, StepEvent
from flowledger.domain.execution_state import ExecutionRecord
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.domain.step_records import StepRecord, step_key

SKIPPED_BY_OPERATOR = "skipped_by_operator"
"""The ``reason`` of a step an operator skipped: unlike a branch not taken, the steps
after it run (as after a completion without output)."""

CANCELLED_BY_FAILURE = "execution_failed"
"""The ``reason`` of the steps a failure cancelled before they ran (reopened on retry)."""

_FAILED = ExecutionStatus.FAILED.value
_CANCELLED_STEP = StepStatus.CANCELLED.value


def reopen(aggregate: ExecutionRecord, version: int) -> None:
    """Reopen a FAILED execution (nothing happens to one in any other status).

    The steps the failure cancelled before they ran are PENDING again; their attempts
    so far stay counted.
    """
    if aggregate._status != _FAILED:
        return
    aggregate._status = ExecutionStatus.RUNNING.value
    aggregate._error = None
    aggregate._paused_on = None
    for step_id in aggregate.step_ids():
        record = aggregate._steps[step_key(step_id)]
        if record["status"] == _CANCELLED_STEP and record["reason"] == CANCELLED_BY_FAILURE:
            changed = aggregate._changing_step(step_id, version)
            changed.update(
                status=StepStatus.PENDING.value,
                reason=None,
                finished_at=None,
                version=version,
            )


def retry_base(aggregate: ExecutionRecord, step_id: str) -> int:
    """Return the attempts a step had when an operator last retried it (0: never).

    Retries after an operator's retry count from there: the step has its whole retry
    policy again.
    """
    bases: dict[str, int] = aggregate.__dict__.get("_retry_bases", {})
    return bases.get(step_id, 0)


@dataclass(frozen=True)
class ExecutionRetried(ExecutionEvent):
    """An operator retried a FAILED execution from its failure.

    Attributes:
        step_ids: The failed steps whose next attempt is due at once, with their
            whole retry policy again.
        actor: Who retried it.
        reason: Why.
    """

    step_ids: list[str]
    actor: str
    reason: str

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        reopen(aggregate, self.originator_version)
        # Set here, never in __init__ (like the worker): executions recorded before
        # retries existed, and their snapshots, do not hold it.
        bases: dict[str, int] = aggregate.__dict__.setdefault("_retry_bases", {})
        for step_id in self.step_ids:
            record = aggregate._changing_step(step_id, self.originator_version)
            record["not_before"] = self.timestamp
            record["version"] = self.originator_version
            bases[step_id] = record["attempts"]


@dataclass(frozen=True)
class StepSkippedByOperator(StepEvent):
    """An operator skipped a step that had not completed (PENDING, PAUSED or FAILED).

    The steps after it run as if it had completed with ``output``; a skip of the step
    that failed the execution reopens it.

    Attributes:
        actor: Who skipped it.
        reason: Why.
        output: JSON text of the output the operator gave in the step's place (what
            references to it resolve to; ``null`` for none).
    """

    actor: str
    reason: str
    output: str
    STATUS: ClassVar[str] = StepStatus.SKIPPED.value
    PAYLOADS: ClassVar[tuple[str, ...]] = ("output",)

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        reopen(aggregate, self.originator_version)
        super()._evolve(aggregate)

    def _update(self, record: StepRecord) -> None:
        record["reason"] = SKIPPED_BY_OPERATOR
        record["not_before"] = None
        record["output"] = self.output
        self._finish(record)
