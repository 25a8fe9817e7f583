"""Small builders and checks for domain tests: hashed definitions, times, refusals."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.application import Application

from flowledger.domain.canonical import canonical_json, sha256_hex
from flowledger.domain.definition.model import (
    Compensation,
    Dependency,
    StepDefinition,
    WorkflowDefinition,
)
from flowledger.domain.execution import Execution
from flowledger.errors import InvalidTransitionError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A timezone-aware moment ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def step(step_id: str, *, after: str | None = None, compensate: bool = False) -> StepDefinition:
    return StepDefinition(
        id=step_id,
        action="noop",
        depends_on=() if after is None else (Dependency(after),),
        compensate=Compensation("undo", {"ref": f"${{{step_id}.output}}"}) if compensate else None,
    )


def hashed(definition: WorkflowDefinition) -> WorkflowDefinition:
    """The definition with the hash the loader gives it."""
    return replace(definition, hash=sha256_hex(canonical_json(definition.to_dict())))


def definition(*steps: StepDefinition, workflow_id: str = "wf") -> WorkflowDefinition:
    return hashed(WorkflowDefinition(id=workflow_id, steps=steps))


def chain_definition(*ids: str, compensate: tuple[str, ...] = ()) -> WorkflowDefinition:
    """A sequence of steps, each after the one before."""
    steps = []
    previous = None
    for step_id in ids:
        steps.append(step(step_id, after=previous, compensate=step_id in compensate))
        previous = step_id
    return definition(*steps)


def error(
    kind: str = "ValueError", message: str = "boom", retryable: bool = True
) -> dict[str, Any]:
    return {"type": kind, "message": message, "retryable": retryable}


def started(
    *ids: str, compensate: tuple[str, ...] = (), input_data: Any = None, execution_id: str = "ex-1"
) -> Execution:
    """A RUNNING execution of a sequence of steps."""
    return Execution.start(
        execution_id, chain_definition(*ids, compensate=compensate), input_data, at(0)
    )


def sqlite_app(tmp_path: Any, snapshot_every: int | None = None) -> Application:
    """A real eventsourcing application on a SQLite file (test code only)."""

    class Ledger(Application):
        snapshotting_intervals = {} if snapshot_every is None else {Execution: snapshot_every}

    db = tmp_path / "ledger.db"
    return Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)})


def refused(execution: Execution, command: Callable[[], object]) -> InvalidTransitionError:
    """Run a command that must be refused, and check it recorded and changed nothing."""
    before = (copy.deepcopy(vars(execution)), execution.state())
    with pytest.raises(InvalidTransitionError) as raised:
        command()
    assert (copy.deepcopy(vars(execution)), execution.state()) == before
    return raised.value
