"""Statuses of executions and steps (string enums, equal to their names)."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """Where an execution is in its lifecycle."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"

    @property
    def is_terminal(self) -> bool:
        """True when the engine has nothing more to do with this execution.

        Only an operator's recorded retry or skip reopens a FAILED execution.
        """
        return self in _TERMINAL_EXECUTION


class StepStatus(StrEnum):
    """Where a step is in its lifecycle."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"
    COMPENSATING = "COMPENSATING"
    ROLLED_BACK = "ROLLED_BACK"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


_TERMINAL_EXECUTION = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.ROLLED_BACK,
        ExecutionStatus.ROLLBACK_FAILED,
    }
)
