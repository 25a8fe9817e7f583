"""The planner on branches: conditional edges, dead paths, guards, condition errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowledger.domain import events as ev
from flowledger.domain.definition import Dependency, StepDefinition
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.decisions import (
    CompleteExecution,
    CompleteTrigger,
    FailExecution,
    RecordCondition,
    SkipStep,
    StartStep,
)
from tests.domain.factories import definition
from tests.engine.test_planning_driver import Driver, Fail, action, steps_workflow

APPROVAL = {
    "id": "approval",
    "nodes": [
        {"id": "submitted", "type": "trigger"},
        {"id": "auto", "config": {"action": "echo", "parameters": {"by": "policy"}}},
        {"id": "manager", "config": {"action": "echo", "parameters": {"by": "${input.boss}"}}},
        {"id": "pay", "config": {"action": "echo", "parameters": {"amount": "${input.amount}"}}},
    ],
    "connections": [
        {"source": "submitted", "target": "auto", "condition": "input.amount <= 100"},
        {"source": "submitted", "target": "manager", "condition": "input.amount > 100"},
        {"source": "auto", "target": "pay"},
        {"source": "manager", "target": "pay"},
    ],
}


# -- branches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "taken", "condition", "not_taken"),
    [
        (50, "auto", "input.amount <= 100", "manager"),
        (500, "manager", "input.amount > 100", "auto"),
    ],
)
def test_an_if_else_that_merges_completes(
    amount: int, taken: str, condition: str, not_taken: str
) -> None:
    driver = Driver(APPROVAL, {"amount": amount, "boss": "ann"})
    first = driver.advance()
    assert first.decisions[0] == CompleteTrigger("submitted", {"amount": amount, "boss": "ann"})
    # The trigger's edges are decided in the same plan.
    assert RecordCondition("submitted", taken, condition, True) in first.decisions
    assert SkipStep(not_taken, "branch_not_taken") in first.decisions
    state = driver.run()
    assert state.status is ExecutionStatus.COMPLETED
    assert driver.statuses() == {
        "submitted": "COMPLETED",
        taken: "COMPLETED",
        not_taken: "SKIPPED",
        "pay": "COMPLETED",
    }
    assert set(state.outputs) == {"submitted", taken, "pay"}
    recorded = [(e.source, e.target, e.value) for e in driver.events(ev.ConditionEvaluated)]
    assert sorted(recorded) == sorted([("submitted", taken, True), ("submitted", not_taken, False)])


def test_a_dead_branch_is_skipped_whole_in_one_plan() -> None:
    wf = steps_workflow(
        action("check"),
        action("no1", depends_on=[{"step": "check", "condition": "not output.ok"}]),
        action("no2"),
        action("no3"),
        action("yes", depends_on=[{"step": "check", "condition": "output.ok"}]),
        action("end", depends_on=["no3", "yes"]),
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("check", {"ok": True})
    assert driver.advance().decisions == (
        RecordCondition("check", "no1", "not output.ok", False),
        SkipStep("no1", "branch_not_taken"),
        SkipStep("no2", "branch_not_taken"),
        SkipStep("no3", "branch_not_taken"),
        RecordCondition("check", "yes", "output.ok", True),
        StartStep("yes", {}),
    )
    assert driver.run().status is ExecutionStatus.COMPLETED
    assert driver.statuses()["end"] == "COMPLETED"


def test_a_step_whose_every_edge_is_inactive_is_skipped_and_the_execution_completes() -> None:
    wf = steps_workflow(action("a"), action("b", depends_on=[{"step": "a", "condition": "false"}]))
    driver = Driver(wf)
    state = driver.run()
    assert state.status is ExecutionStatus.COMPLETED and state.outputs == {"a": {"from": "a"}}
    assert driver.decisions()[-2:] == [
        SkipStep("b", "branch_not_taken"),
        CompleteExecution({"a": {"from": "a"}}),
    ]


def test_every_edge_condition_is_recorded_once_even_when_one_is_enough() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]),
        action("b", depends_on=[]),
        action(
            "c",
            depends_on=[
                {"step": "a", "condition": "output.v == 1"},
                {"step": "b", "condition": "output.v == 1"},
            ],
        ),
    )
    driver = Driver(wf)
    driver.run({"a": {"v": 1}, "b": {"v": 2}})
    recorded = [(e.source, e.value) for e in driver.events(ev.ConditionEvaluated)]
    assert recorded == [("a", True), ("b", False)]
    assert driver.statuses()["c"] == "COMPLETED"


# -- guards -----------------------------------------------------------------------------


def test_a_false_guard_skips_the_step_and_its_branch() -> None:
    wf = steps_workflow(action("a", condition="input.go"), action("b"), action("c", depends_on=[]))
    driver = Driver(wf, {"go": False})
    assert driver.advance().decisions == (
        RecordCondition(None, "a", "input.go", False),
        SkipStep("a", "condition_false"),
        SkipStep("b", "branch_not_taken"),
        StartStep("c", {}),
    )
    assert driver.run().status is ExecutionStatus.COMPLETED


def test_a_guard_reads_its_single_dependency() -> None:
    wf = steps_workflow(
        action("a"), action("b", condition="output.n > 1 and status == 'COMPLETED'")
    )
    driver = Driver(wf)
    driver.run({"a": {"n": 2}})
    assert driver.decisions(RecordCondition) == [
        RecordCondition(None, "b", "output.n > 1 and status == 'COMPLETED'", True)
    ]
    assert driver.statuses()["b"] == "COMPLETED"


def test_a_guard_with_several_dependencies_reads_steps() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]),
        action("b", depends_on=[]),
        action("c", depends_on=["a", "b"], condition="steps.a.output.n + steps.b.output.n > 2"),
    )
    driver = Driver(wf)
    driver.run({"a": {"n": 1}, "b": {"n": 1}})
    assert driver.statuses()["c"] == "SKIPPED"
    assert driver.state().steps["c"].reason == "condition_false"


# -- conditions that cannot be evaluated ------------------------------------------------


def test_a_condition_error_fails_the_execution_loudly() -> None:
    wf = steps_workflow(
        action("a"), action("b", depends_on=[{"step": "a", "condition": "output.total > 1"}])
    )
    driver = Driver(wf)
    state = driver.run({"a": {"other": 1}})
    assert state.status is ExecutionStatus.FAILED
    failure = driver.decisions(FailExecution)[0]
    assert failure.step_id == "b" and state.error == failure.error
    assert failure.error["type"] == "ConditionError" and failure.error["retryable"] is False
    assert "output.total > 1" in failure.error["message"]
    # Nothing was recorded as a branch not taken, and the step never ran.
    assert driver.events(ev.ConditionEvaluated) == []
    assert driver.statuses()["b"] == "CANCELLED"
    assert driver.state().steps["b"].reason == "execution_failed"


def test_a_condition_error_waits_for_steps_in_flight_and_starts_nothing() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]),
        action("slow", depends_on=[]),
        action("ok", depends_on=["a"]),
        action("bad", depends_on=["a"], condition="output.missing"),
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", {})
    planned = driver.advance()
    assert planned.idle and planned.in_flight == ("slow",)
    driver.finish("slow", {})
    assert driver.run().status is ExecutionStatus.FAILED
    assert driver.statuses()["ok"] == "CANCELLED"
    assert driver.decisions(StartStep) == [StartStep("a", {}), StartStep("slow", {})]


def test_a_condition_that_does_not_compile_fails_the_execution() -> None:
    wf = definition(StepDefinition(id="a", action="noop", condition="1 +"))
    driver = Driver(wf)
    driver.run()
    assert driver.state().status is ExecutionStatus.FAILED
    assert "invalid condition" in driver.decisions(FailExecution)[0].error["message"]


def test_an_empty_condition_is_always_true() -> None:
    wf = definition(
        StepDefinition(id="a", action="noop", condition=""),
        StepDefinition(id="b", action="noop", depends_on=(Dependency("a", ""),)),
    )
    driver = Driver(wf)
    assert driver.run().status is ExecutionStatus.COMPLETED
    assert driver.decisions(RecordCondition) == []


# -- continue_on_error ------------------------------------------------------------------


def test_continue_on_error_lets_conditions_read_status_and_error() -> None:
    wf = steps_workflow(
        action("risky", continue_on_error=True),
        action("recover", depends_on=[{"step": "risky", "condition": "status == 'FAILED'"}]),
        action("notify", depends_on=[{"step": "risky", "condition": "error.type == 'Oops'"}]),
        action("proceed", depends_on=[{"step": "risky", "condition": "status == 'COMPLETED'"}]),
        action("always", depends_on=["risky"]),
    )
    driver = Driver(wf)
    state = driver.run({"risky": Fail(kind="Oops")})
    assert state.status is ExecutionStatus.COMPLETED
    assert driver.statuses() == {
        "risky": "FAILED",
        "recover": "COMPLETED",
        "notify": "COMPLETED",
        "proceed": "SKIPPED",
        "always": "COMPLETED",
    }
    assert "risky" not in state.outputs


def test_a_failed_step_with_continue_on_error_resolves_its_edges_only_when_final() -> None:
    wf = steps_workflow(action("risky", continue_on_error=True), action("next"))
    driver = Driver(wf)
    driver.advance()
    driver.finish("risky", Fail(retry_in=30))
    planned = driver.advance()
    assert planned.decisions == () and planned.wake_at == driver.now + timedelta(seconds=29)
