"""The planner on running executions: order, triggers, missing input, retries, limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowledger.domain import events as ev
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.decisions import (
    CompleteExecution,
    CompleteTrigger,
    PauseExecution,
    PauseStep,
    Plan,
    RecordCondition,
    SkipStep,
    StartStep,
)
from flowledger.engine.planning import plan
from flowledger.engine.scheduling import ReferenceContext, StepResults
from tests.engine.test_planning_driver import T0, Driver, Fail, action, steps_workflow

# -- order ------------------------------------------------------------------------------


def test_a_sequence_runs_one_step_at_a_time_and_completes_with_every_output() -> None:
    driver = Driver(steps_workflow(action("a"), action("b"), action("c")))
    assert driver.advance().decisions == (StartStep("a", {}),)
    assert driver.advance().idle
    driver.finish("a", {"n": 1})
    assert driver.advance().decisions == (StartStep("b", {}),)
    driver.finish("b", {"n": 2})
    driver.advance()
    driver.finish("c", [3])
    assert driver.advance().decisions == (
        CompleteExecution({"a": {"n": 1}, "b": {"n": 2}, "c": [3]}),
    )
    assert driver.state().status is ExecutionStatus.COMPLETED
    assert driver.advance() == Plan()


def test_parallel_roots_start_together_and_a_join_waits_for_both() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]),
        action("b", depends_on=[]),
        action("join", depends_on=["a", "b"], parameters={"x": "${a.output.v}"}),
    )
    driver = Driver(wf)
    assert driver.advance().decisions == (StartStep("a", {}), StartStep("b", {}))
    driver.finish("b", {"v": 2})
    planned = driver.advance()
    assert planned.decisions == () and planned.in_flight == ("a",)
    driver.finish("a", {"v": 1})
    assert driver.advance().decisions == (StartStep("join", {"x": 1}),)


def test_parameters_are_resolved_from_input_and_upstream_outputs() -> None:
    wf = steps_workflow(
        action("fetch", parameters={"id": "${input.order.id}"}),
        action("use", parameters={"text": "n=${fetch.output.n}", "all": "${fetch.output}"}),
    )
    driver = Driver(wf, {"order": {"id": 7}})
    assert driver.advance().decisions == (StartStep("fetch", {"id": 7}),)
    driver.finish("fetch", {"n": 3})
    assert driver.advance().decisions == (StartStep("use", {"text": "n=3", "all": {"n": 3}}),)


# -- triggers ---------------------------------------------------------------------------


def test_a_trigger_completes_with_the_input_and_its_successors_start_at_once() -> None:
    graph = {
        "id": "g",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "greet",
                "config": {"action": "echo", "parameters": {"to": "${start.output.name}"}},
            },
        ],
        "connections": [{"source": "start", "target": "greet"}],
    }
    driver = Driver(graph, {"name": "ann"})
    assert driver.advance().decisions == (
        CompleteTrigger("start", {"name": "ann"}),
        StartStep("greet", {"to": "ann"}),
    )
    state = driver.run()
    assert state.status is ExecutionStatus.COMPLETED
    assert state.outputs["start"] == {"name": "ann"}


def test_a_workflow_of_only_a_trigger_completes_in_one_plan() -> None:
    driver = Driver({"id": "g", "nodes": [{"id": "t", "type": "trigger"}]}, {"a": 1})
    assert driver.advance().decisions == (
        CompleteTrigger("t", {"a": 1}),
        CompleteExecution({"t": {"a": 1}}),
    )


# -- missing input ----------------------------------------------------------------------


def test_missing_input_pauses_and_resume_continues() -> None:
    wf = steps_workflow(
        action("a"), action("greet", parameters={"to": "${input.name}"}), action("c")
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", {})
    assert driver.advance().decisions == (
        PauseStep("greet", "input.name"),
        PauseExecution("greet", "input.name"),
    )
    state = driver.state()
    assert state.status is ExecutionStatus.PAUSED and state.paused_on == "input.name"
    assert driver.advance().settled
    driver.execution.provide_input({"name": "ann"}, "ops", driver.now)
    driver.execution.resume("ops", driver.now)
    assert driver.advance().decisions == (StartStep("greet", {"to": "ann"}),)
    assert driver.run().status is ExecutionStatus.COMPLETED


def test_a_resume_without_the_input_pauses_again_without_pausing_the_step_twice() -> None:
    driver = Driver(steps_workflow(action("greet", parameters={"to": "${input.name}"})))
    driver.advance()
    driver.execution.resume(None, driver.now)
    assert driver.advance().decisions == (PauseExecution("greet", "input.name"),)
    assert driver.state().status is ExecutionStatus.PAUSED


def test_steps_ready_with_their_input_start_before_the_pause() -> None:
    wf = steps_workflow(
        action("x", depends_on=[], parameters={"v": "${input.x}"}),
        action("ok", depends_on=[]),
        action("y", depends_on=[], parameters={"v": "${input.y}"}),
    )
    driver = Driver(wf)
    assert driver.advance().decisions == (
        PauseStep("x", "input.x"),
        StartStep("ok", {}),
        PauseStep("y", "input.y"),
        PauseExecution("x", "input.x"),
    )
    planned = driver.advance()
    assert planned.idle and planned.in_flight == ("ok",)
    driver.finish("ok", {})
    driver.execution.provide_input({"x": 1, "y": 2}, None, driver.now)
    driver.execution.resume(None, driver.now)
    assert driver.advance().decisions == (StartStep("x", {"v": 1}), StartStep("y", {"v": 2}))


def test_a_guard_is_not_evaluated_again_after_a_pause() -> None:
    wf = steps_workflow(action("a", condition="true", parameters={"v": "${input.v}"}))
    driver = Driver(wf)
    driver.advance()
    driver.execution.provide_input({"v": 1}, None, driver.now)
    driver.execution.resume(None, driver.now)
    assert driver.run().status is ExecutionStatus.COMPLETED
    assert len(driver.events(ev.ConditionEvaluated)) == 1


# -- retries ----------------------------------------------------------------------------


def test_a_retry_waits_until_not_before_then_starts_with_fresh_parameters() -> None:
    driver = Driver(steps_workflow(action("a", parameters={"v": "${input.v}"})), {"v": 1})
    driver.advance()
    driver.finish("a", Fail(retry_in=10))
    due = driver.now + timedelta(seconds=10)
    planned = driver.advance()
    assert planned == Plan(wake_at=due)
    driver.execution.provide_input({"v": 2}, None, driver.now)
    assert (
        plan(driver.execution, driver.definition, due - timedelta(microseconds=1)).decisions == ()
    )
    assert plan(driver.execution, driver.definition, due).decisions == (StartStep("a", {"v": 2}),)


def test_wake_at_is_the_earliest_retry() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]), action("b", depends_on=[]), action("c", depends_on=[])
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", Fail(retry_in=20))
    driver.finish("b", Fail(retry_in=5))
    driver.finish("c", Fail(retry_in=9))
    assert driver.advance().wake_at == T0 + timedelta(seconds=6)


def test_a_step_that_fails_then_succeeds_on_retry_completes_the_execution() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    state = driver.run({"a": [Fail(retry_in=3), Fail(retry_in=3), {"ok": True}]})
    assert state.status is ExecutionStatus.COMPLETED
    assert state.steps["a"].attempts == 3 and state.outputs["a"] == {"ok": True}


# -- limits and checks ------------------------------------------------------------------


def test_max_starts_defers_whole_steps_and_nothing_is_recorded_twice() -> None:
    wf = steps_workflow(
        action("a"),
        action("b", depends_on=[{"step": "a", "condition": "true"}]),
        action("c", depends_on=[{"step": "a", "condition": "true"}]),
        action("d", depends_on=[{"step": "a", "condition": "false"}]),
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", {})
    assert driver.advance(max_starts=1).decisions == (
        RecordCondition("a", "b", "true", True),
        StartStep("b", {}),
        RecordCondition("a", "d", "false", False),
        SkipStep("d", "branch_not_taken"),
    )
    assert driver.advance(max_starts=0).decisions == ()
    assert driver.advance(max_starts=1).decisions == (
        RecordCondition("a", "c", "true", True),
        StartStep("c", {}),
    )


def test_max_starts_also_bounds_restarts() -> None:
    driver = Driver(steps_workflow(action("a")))
    driver.advance()
    driver.finish("a", Fail(retry_in=0))
    assert driver.advance(max_starts=0).decisions == ()
    assert driver.advance(max_starts=1).decisions == (StartStep("a", {}),)


def test_an_interrupted_step_starts_again() -> None:
    driver = Driver(steps_workflow(action("a", parameters={"v": 1}), action("b")))
    driver.advance()
    driver.execution.interrupt_step("a", driver.now)
    assert driver.plan().idle
    planned = driver.advance(interrupted={"a", "b", "unknown"})
    assert planned.decisions == (StartStep("a", {"v": 1}),) and planned.in_flight == ()
    assert driver.state().steps["a"].attempts == 1  # the interrupted attempt runs again


def test_an_interrupted_step_whose_input_went_missing_pauses() -> None:
    driver = Driver(steps_workflow(action("a", parameters={"v": "${input.v.w}"})), {"v": {"w": 1}})
    driver.advance()
    driver.execution.interrupt_step("a", driver.now)
    driver.execution.provide_input({"v": 5}, None, driver.now)
    assert driver.advance(interrupted=["a"]).decisions == (
        PauseStep("a", "input.v.w"),
        PauseExecution("a", "input.v.w"),
    )


def test_now_must_be_aware_and_the_definition_must_be_the_executions() -> None:
    driver = Driver(steps_workflow(action("a")))
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(driver.execution, driver.definition, T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="is not the one execution 'ex-1' runs"):
        plan(driver.execution, steps_workflow(action("other")), T0)


def test_conditions_and_references_read_every_steps_result_as_a_mapping() -> None:
    guard = "len(steps) == 3 and steps != {} and steps.a.output.n == 1"
    driver = Driver(steps_workflow(action("a"), action("b"), action("c", condition=guard)))
    driver.run({"a": {"n": 1}})
    assert driver.decisions(RecordCondition) == [RecordCondition(None, "c", guard, True)]
    state = driver.state()
    results = StepResults(state)
    context = ReferenceContext(state, results)
    assert list(context) == ["input", "a", "b", "c"] and len(context) == 4
    assert context["input"] == {} and "input" in context and "d" not in context
    assert dict(results)["a"] == {"output": {"n": 1}, "status": "COMPLETED", "error": None}
