"""Read-only values derived from an execution's events.

They are what callers see: the aggregate builds them from its recorded state, the
ledger returns them, and they compare equal when the histories they come from do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowledger.domain.status import ExecutionStatus, StepStatus


@dataclass(frozen=True)
class StepState:
    """The state of one step of an execution.

    Attributes:
        step_id: The step's id in the definition.
        status: Where the step is in its lifecycle.
        attempts: How many times the step has been started.
        output: What its action returned (None until it completes).
        error: Failure of the latest attempt as ``{"type", "message", "retryable"}``, or
            None (cleared when the next attempt starts; past failures stay in the history).
        started_at: When the latest attempt started.
        finished_at: When the step last reached a resting state.
        duration_ms: Duration of the latest finished attempt.
        not_before: When a scheduled retry may start, or None.
        reason: Why the step was skipped, paused or cancelled, where it was.
        compensation_output: What the compensating action returned, once rolled back.
    """

    step_id: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    not_before: datetime | None = None
    reason: str | None = None
    compensation_output: Any = None


@dataclass(frozen=True)
class ExecutionState:
    """The state of one execution at one version of its history.

    Attributes:
        execution_id: The execution's id (a string key).
        workflow_id: The id of the workflow definition it runs.
        status: Where the execution is in its lifecycle.
        input: The execution input, with any inputs provided later merged in.
        steps: Every step's state, keyed by step id, in the definition's (topological) order.
        outputs: Step id to output, for completed steps.
        error: Why the execution failed, as error data, or None.
        paused_on: The missing variable it waits for, or None.
        version: How many events the state is built from.
        created_at: When the execution started.
        updated_at: When its latest event happened.
        definition_hash: SHA-256 of the canonical definition it runs.
        cancel_requested: True once a cancel was asked for.
        worker: The worker whose lease drives it (stores shared by several engines),
            or None.
    """

    execution_id: str
    workflow_id: str
    status: ExecutionStatus
    input: dict[str, Any]
    steps: dict[str, StepState]
    outputs: dict[str, Any]
    error: dict[str, Any] | None
    paused_on: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    definition_hash: str
    cancel_requested: bool = False
    worker: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded event, as an auditor reads it.

    Attributes:
        version: Position of the event in the execution's history (from 1).
        type: The event's name, for example ``StepCompleted``.
        timestamp: When it happened.
        step_id: The step it concerns, or None.
        data: Its fields, with payloads decoded.
        hash: The event's link in the hash chain.
        prev_hash: The link before it.
        execution_id: The execution whose history it is in.
    """

    version: int
    type: str
    timestamp: datetime
    step_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    hash: str = ""
    prev_hash: str = ""
    execution_id: str = ""
