"""The runner plans once per turn unless the plan says ``replan`` or a start was refused."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine import runner
from flowledger.engine.decisions import Plan
from flowledger.engine.engine import WorkflowEngine


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[Plan]:
    """Every plan the runners make, in order."""
    made: list[Plan] = []
    planner = runner.plan

    def counted(*arguments: Any, **options: Any) -> Plan:
        made.append(planner(*arguments, **options))
        return made[-1]

    monkeypatch.setattr(runner, "plan", counted)
    return made


async def test_a_sequence_is_planned_once_per_step(plans: list[Plan]) -> None:
    steps = [{"id": f"s{i}", "action": "noop"} for i in range(20)]
    async with WorkflowEngine("memory://") as engine:
        state = await engine.run_workflow({"id": "seq", "steps": steps}, timeout=10)
    assert state.status is ExecutionStatus.COMPLETED
    # One plan starts each step (with the previous one's completion), one completes.
    assert len(plans) == 21
    assert all(planned.decisions for planned in plans)


async def test_a_refused_start_is_planned_on_in_the_same_turn(plans: list[Plan]) -> None:
    actions = {"a": "noop", "b": "missing", "c": "noop"}
    steps = [{"id": step_id, "action": action} for step_id, action in actions.items()]
    async with WorkflowEngine("memory://") as engine:
        state = await engine.run_workflow({"id": "refused", "steps": steps}, timeout=10)
    assert state.status is ExecutionStatus.FAILED
    assert state.steps["b"].error is not None
    assert state.steps["b"].error["type"] == "UnknownActionError"
    assert state.steps["c"].status is StepStatus.CANCELLED
    # a starts; b starts and is refused, so the same turn plans the failure.
    assert len(plans) == 3
