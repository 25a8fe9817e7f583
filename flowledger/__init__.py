"""flowledger: a durable workflow engine whose every state change is a ledger event.

This module only re-exports the public names; the implementation lives in the
``domain``, ``projections``, ``engine`` and ``cli`` packages.
"""

from __future__ import annotations

from flowledger.domain.definition import (
    Compensation,
    Dependency,
    RetryPolicy,
    StepDefinition,
    WorkflowDefinition,
    load_definition,
)
from flowledger.domain.state import ExecutionState, HistoryEntry, StepState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.errors import (
    ChainError,
    ConditionError,
    DefinitionError,
    DefinitionProblem,
    ExecutionNotFoundError,
    FlowledgerError,
    InvalidTransitionError,
    MissingInputError,
    NonRetryableError,
    SchemaValidationError,
    StepTimeoutError,
)

__all__ = [
    "ChainError",
    "Compensation",
    "ConditionError",
    "DefinitionError",
    "DefinitionProblem",
    "Dependency",
    "ExecutionNotFoundError",
    "ExecutionState",
    "ExecutionStatus",
    "FlowledgerError",
    "HistoryEntry",
    "InvalidTransitionError",
    "MissingInputError",
    "NonRetryableError",
    "RetryPolicy",
    "SchemaValidationError",
    "StepDefinition",
    "StepState",
    "StepStatus",
    "StepTimeoutError",
    "WorkflowDefinition",
    "load_definition",
]
