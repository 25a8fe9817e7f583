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
from flowledger.engine.actions import ActionRegistry
from flowledger.engine.audit import VerifyReport
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.ledger import Ledger
from flowledger.engine.notifications import Notification
from flowledger.errors import (
    ActionRegistrationError,
    ActionSignatureError,
    ChainError,
    ConcurrencyConflictError,
    ConditionError,
    CorruptRecordError,
    DefinitionError,
    DefinitionProblem,
    ExecutionNotFoundError,
    FlowledgerError,
    InvalidTransitionError,
    MissingInputError,
    NonRetryableError,
    OutputNotSerializableError,
    SchemaValidationError,
    StepTimeoutError,
    StoreError,
    UnavailableOutputError,
    UnknownActionError,
    VersionNotFoundError,
)

__all__ = [
    "ActionRegistrationError",
    "ActionRegistry",
    "ActionSignatureError",
    "ChainError",
    "Compensation",
    "ConcurrencyConflictError",
    "ConditionError",
    "CorruptRecordError",
    "DefinitionError",
    "DefinitionProblem",
    "Dependency",
    "ExecutionNotFoundError",
    "ExecutionState",
    "ExecutionStatus",
    "FlowledgerError",
    "HistoryEntry",
    "InvalidTransitionError",
    "Ledger",
    "MissingInputError",
    "NonRetryableError",
    "Notification",
    "OutputNotSerializableError",
    "RetryPolicy",
    "SchemaValidationError",
    "StepDefinition",
    "StepState",
    "StepStatus",
    "StepTimeoutError",
    "StoreError",
    "UnavailableOutputError",
    "UnknownActionError",
    "VerifyReport",
    "VersionNotFoundError",
    "WorkflowDefinition",
    "WorkflowEngine",
    "load_definition",
]
