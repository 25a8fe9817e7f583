"""Workflow definitions: loading, normalising and checking both formats."""

from __future__ import annotations

from flowledger.domain.definition.loading import load_definition
from flowledger.domain.definition.model import (
    Compensation,
    Dependency,
    RetryPolicy,
    StepDefinition,
    StepKind,
    WorkflowDefinition,
)

__all__ = [
    "Compensation",
    "Dependency",
    "RetryPolicy",
    "StepDefinition",
    "StepKind",
    "WorkflowDefinition",
    "load_definition",
]
