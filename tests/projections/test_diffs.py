"""Diffs of execution states: two moments of one execution, and two executions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flowledger import ExecutionState, ExecutionStatus, StepState, StepStatus, WorkflowEngine
from flowledger.projections.diffs import (
    Change,
    ExecutionDiff,
    StepDiff,
    compare_executions,
    diff_states,
)
from tests.domain.factories import at
from tests.unit.conftest import WAIT, step, workflow


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    """A started engine on a SQLite file of the test's own."""
    made = WorkflowEngine(store=f"sqlite:///{tmp_path}/ledger.db")

    @made.action("price")
    async def price(amount: int) -> dict[str, Any]:
        if amount < 0:
            raise ValueError(f"negative amount {amount}")
        return {"total": amount * 2}

    async with made:
        yield made
    made.close()


def priced(**options: Any) -> dict[str, Any]:
    """``price`` doubles the input amount, then ``echo`` reports it."""
    return workflow(
        step("price", "price", parameters={"amount": "${input.amount}"}, retry={"max_attempts": 1}),
        step("report", parameters={"total": "${price.output.total}"}),
        **options,
    )


async def run(engine: WorkflowEngine, definition: dict[str, Any], amount: int) -> ExecutionState:
    return await engine.run_workflow(definition, {"amount": amount}, timeout=WAIT)


def changed(diff: ExecutionDiff, step_id: str | None = None) -> dict[str, tuple[Any, Any]]:
    """The changed fields of the execution (or one step) as ``name: (before, after)``."""
    if step_id is None:
        return {change.field: (change.before, change.after) for change in diff.changes}
    (found,) = [step for step in diff.step_changes if step.step_id == step_id]
    return {change.field: (change.before, change.after) for change in found.changes}


# -- two moments of one execution -----------------------------------------------------


async def test_a_diff_between_two_moments_shows_what_the_events_between_changed(
    engine: WorkflowEngine,
) -> None:
    state = await run(engine, priced(), 21)
    history = engine.ledger.history(state.execution_id)
    after_price = next(e.version for e in history if e.type == "StepCompleted")
    early = engine.ledger.get(state.execution_id, version=after_price)

    diff = diff_states(early, state)

    assert changed(diff)["status"] == (ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED)
    assert changed(diff)["outputs"] == (
        {"price": {"total": 42}},
        {"price": {"total": 42}, "report": {"total": 42}},
    )
    assert [step.step_id for step in diff.step_changes] == ["report"]
    report = changed(diff, "report")
    assert report["status"] == (StepStatus.PENDING, StepStatus.COMPLETED)
    assert report["attempts"] == (0, 1)
    assert report["output"] == (None, {"total": 42})
    (duration,) = [c for c in diff.step_changes[0].changes if c.field == "duration_ms"]
    assert duration.before is None and duration.delta_ms is None
    assert (diff.before_version, diff.after_version) == (after_price, state.version)
    assert not diff.is_empty


async def test_a_state_compared_with_itself_is_an_empty_diff(engine: WorkflowEngine) -> None:
    state = await run(engine, priced(), 1)
    again = engine.ledger.get(state.execution_id)

    diff = diff_states(state, again)

    assert diff.is_empty
    assert diff.lines() == ["no differences"]
    assert diff.to_dict()["is_empty"] is True


async def test_states_of_two_executions_are_refused_by_diff_states(engine: WorkflowEngine) -> None:
    a, b = await run(engine, priced(), 1), await run(engine, priced(), 2)
    with pytest.raises(ValueError, match="compare_executions"):
        diff_states(a, b)


# -- two executions -------------------------------------------------------------------


async def test_two_runs_of_one_workflow_differ_in_outputs_and_durations(
    engine: WorkflowEngine,
) -> None:
    first, second = await run(engine, priced(), 1), await run(engine, priced(), 5)

    diff = compare_executions(first, second)

    assert diff.notes == ()
    assert changed(diff)["input"] == ({"amount": 1}, {"amount": 5})
    assert changed(diff, "price")["output"] == ({"total": 2}, {"total": 10})
    durations = [
        change
        for step in diff.step_changes
        for change in step.changes
        if change.field == "duration_ms"
    ]
    for change in durations:
        assert change.delta_ms == pytest.approx(change.after - change.before)
    assert 'step price: output: {"total":2} -> {"total":10}' in diff.lines()


async def test_a_failed_run_compared_with_a_completed_one(engine: WorkflowEngine) -> None:
    good, bad = await run(engine, priced(), 3), await run(engine, priced(), -3)
    assert bad.status is ExecutionStatus.FAILED

    diff = compare_executions(good, bad)

    assert changed(diff)["status"] == (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
    before_error, after_error = changed(diff)["error"]
    assert before_error is None
    assert after_error["type"] == "ValueError"
    price = changed(diff, "price")
    assert price["status"] == (StepStatus.COMPLETED, StepStatus.FAILED)
    assert price["output"] == ({"total": 6}, None)
    assert price["error"][1]["message"] == "negative amount -3"
    assert changed(diff, "report")["status"][1] is not StepStatus.COMPLETED
    lines = diff.lines()
    assert "execution status: COMPLETED -> FAILED" in lines
    assert "step price: status: COMPLETED -> FAILED" in lines
    assert all("\n" not in line for line in lines)


async def test_runs_of_changed_definitions_note_it_and_align_steps_by_id(
    engine: WorkflowEngine,
) -> None:
    old = await run(engine, priced(), 2)
    changed_definition = priced()
    changed_definition["steps"] = [
        changed_definition["steps"][0],
        step("audit", parameters={"seen": True}),
    ]
    new = await run(engine, changed_definition, 2)

    diff = compare_executions(old, new)

    assert len(diff.notes) == 1
    assert "different definitions of workflow 'wf'" in diff.notes[0]
    assert old.definition_hash[:12] in diff.notes[0]
    by_id = {step.step_id: step for step in diff.step_changes}
    assert by_id["report"].presence == "before"
    assert by_id["audit"].presence == "after"
    assert "price" not in by_id or all(c.field == "duration_ms" for c in by_id["price"].changes)
    assert [step.step_id for step in diff.step_changes][-2:] == ["report", "audit"]
    lines = diff.lines()
    assert lines[0].startswith("note: the executions ran different definitions")
    assert "step report: only before (COMPLETED)" in lines
    assert "step audit: only after (COMPLETED)" in lines


async def test_executions_of_different_workflows_are_refused(engine: WorkflowEngine) -> None:
    a = await run(engine, priced(), 1)
    b = await run(engine, priced(workflow_id="other"), 1)
    with pytest.raises(ValueError, match="run different workflows"):
        compare_executions(a, b)


async def test_a_diff_is_json_ready(engine: WorkflowEngine) -> None:
    good, bad = await run(engine, priced(), 3), await run(engine, priced(), -3)

    document = json.loads(json.dumps(compare_executions(good, bad).to_dict()))

    assert document["before"] == {"execution_id": good.execution_id, "version": good.version}
    assert document["after"]["execution_id"] == bad.execution_id
    assert {"field": "status", "before": "COMPLETED", "after": "FAILED"} in document["changes"]
    price = next(step for step in document["step_changes"] if step["step_id"] == "price")
    assert price["presence"] == "both"
    duration = next(c for c in price["changes"] if c["field"] == "duration_ms")
    assert set(duration) == {"field", "before", "after", "delta_ms"}
    assert document["is_empty"] is False


# -- values compared as JSON values ---------------------------------------------------


def state_with(step_output: Any, duration_ms: float | None = 10.0) -> ExecutionState:
    """A finished one-step state, for comparisons of single values."""
    one = StepState("a", StepStatus.COMPLETED, 1, step_output, duration_ms=duration_ms)
    return ExecutionState(
        execution_id="ex",
        workflow_id="wf",
        status=ExecutionStatus.COMPLETED,
        input={},
        steps={"a": one},
        outputs={"a": step_output},
        error=None,
        paused_on=None,
        version=4,
        created_at=at(0),
        updated_at=at(1),
        definition_hash="h" * 64,
    )


@pytest.mark.parametrize(("left", "right"), [(1, 1.0), (1, True), (0, False), ([1], (1, 2))])
def test_outputs_equal_in_python_but_not_in_json_differ(left: Any, right: Any) -> None:
    diff = diff_states(state_with(left), state_with(right))
    assert changed(diff, "a")["output"] == (left, right)


def test_equal_values_of_different_containers_do_not_differ() -> None:
    assert diff_states(state_with([1, {"b": 2}]), state_with((1, {"b": 2}))).is_empty


def test_values_that_are_not_json_fall_back_to_equality() -> None:
    nan = float("nan")
    assert not diff_states(state_with(nan), state_with(nan)).is_empty  # nan != nan
    assert diff_states(state_with(1, duration_ms=nan), state_with(1, duration_ms=nan)).step_changes


def test_duration_changes_state_their_delta() -> None:
    diff = diff_states(state_with(1, 10.0), state_with(1, 2500.0))
    (step_diff,) = diff.step_changes
    assert step_diff.changes == (Change("duration_ms", 10.0, 2500.0, 2490.0),)
    assert step_diff.lines() == ["step a: duration: 10 ms -> 2.50 s (+2.49 s)"]
    faster = diff_states(state_with(1, 2500.0), state_with(1, 10.0)).lines()
    assert faster == ["step a: duration: 2.50 s -> 10 ms (-2.49 s)"]
    unknown = diff_states(state_with(1, None), state_with(1, 3.0)).lines()
    assert unknown == ["step a: duration: none -> 3.00 ms"]


def test_a_step_on_one_side_only_shows_its_status() -> None:
    left = state_with(1)
    right = replace(left, steps={})
    diff = diff_states(left, right)
    assert diff.step_changes == (
        StepDiff("a", "before", (Change("status", StepStatus.COMPLETED, None),)),
    )
    assert diff.step_changes[0].to_dict() == {
        "step_id": "a",
        "presence": "before",
        "changes": [{"field": "status", "before": "COMPLETED", "after": None}],
    }
