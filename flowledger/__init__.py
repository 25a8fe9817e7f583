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
from flowledger.engine.encryption import generate_cipher_key
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.ledger import Ledger
from flowledger.engine.notifications import Notification
from flowledger.engine.what_if import StepComparison, WhatIfReport
from flowledger.errors import (
    ActionRegistrationError,
    ActionSignatureError,
    ChainError,
    CipherKeyError,
    ConcurrencyConflictError,
    ConditionError,
    CorruptRecordError,
    DefinitionError,
    DefinitionProblem,
    ExecutionNotFoundError,
    FlowledgerError,
    ImportConflictError,
    InvalidTransitionError,
    MissingInputError,
    NonRetryableError,
    OperatorActionError,
    OutputNotSerializableError,
    SchemaValidationError,
    SigningKeyError,
    StepTimeoutError,
    StoreError,
    SubjectForgottenError,
    UnavailableOutputError,
    UnknownActionError,
    VersionNotFoundError,
)
from flowledger.projections.diffs import ExecutionDiff
from flowledger.projections.step_metrics import StepMetrics
from flowledger.projections.timeline import TimelineLine

__all__ = [
    "ActionRegistrationError",
    "ActionRegistry",
    "ActionSignatureError",
    "ChainError",
    "CipherKeyError",
    "Compensation",
    "ConcurrencyConflictError",
    "ConditionError",
    "CorruptRecordError",
    "DefinitionError",
    "DefinitionProblem",
    "Dependency",
    "ExecutionDiff",
    "ExecutionNotFoundError",
    "ExecutionState",
    "ExecutionStatus",
    "FlowledgerError",
    "HistoryEntry",
    "ImportConflictError",
    "InvalidTransitionError",
    "Ledger",
    "MissingInputError",
    "NonRetryableError",
    "Notification",
    "OperatorActionError",
    "OutputNotSerializableError",
    "RetryPolicy",
    "SchemaValidationError",
    "SigningKeyError",
    "StepComparison",
    "StepDefinition",
    "StepMetrics",
    "StepState",
    "StepStatus",
    "StepTimeoutError",
    "StoreError",
    "SubjectForgottenError",
    "TimelineLine",
    "UnavailableOutputError",
    "UnknownActionError",
    "VerifyReport",
    "VersionNotFoundError",
    "WhatIfReport",
    "WorkflowDefinition",
    "WorkflowEngine",
    "generate_cipher_key",
    "load_definition",
]
