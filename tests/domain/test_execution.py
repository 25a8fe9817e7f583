from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest

from flowledger.domain import events as ev
from flowledger.domain.canonical import canonical_json
from flowledger.domain.definition.model import WorkflowDefinition
from flowledger.domain.execution import EXECUTION_NAMESPACE, Execution, execution_uuid
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.errors import InvalidTransitionError
from tests.domain.factories import T0, at, chain_definition, error, refused, started, step


def last_event(execution: Execution) -> Any:
    return execution.pending_events[-1]


def own_fields(event: Any) -> dict[str, Any]:
    store = {"originator_id", "originator_version", "timestamp", "prev_hash", "hash"}
    return {name: value for name, value in vars(event).items() if name not in store}


def described(error: InvalidTransitionError) -> tuple[object, ...]:
    return (error.entity, error.state, error.trigger, error.subject)


# -- creation -------------------------------------------------------------------------


def test_start_records_the_whole_definition_and_is_running() -> None:
    wf = chain_definition("a", "b", "c")
    execution = Execution.start("order-1", wf, {"n": 1}, at(0))
    event = last_event(execution)
    assert isinstance(event, ev.ExecutionStarted)
    assert (event.execution_id, event.workflow_id, event.timestamp) == ("order-1", "wf", T0)
    assert json.loads(event.definition) == wf.to_dict()
    assert event.definition == canonical_json(wf.to_dict())
    assert event.definition_hash == wf.hash
    assert execution.id == execution_uuid("order-1")
    assert execution.execution_id == "order-1"
    state = execution.state()
    assert state.status is ExecutionStatus.RUNNING and execution.status == "RUNNING"
    assert (state.execution_id, state.workflow_id, state.version) == ("order-1", "wf", 1)
    assert state.input == {"n": 1}
    assert list(state.steps) == ["a", "b", "c"]
    assert all(s.status is StepStatus.PENDING and s.attempts == 0 for s in state.steps.values())
    assert (state.outputs, state.error, state.paused_on) == ({}, None, None)
    assert state.created_at == state.updated_at == T0
    assert state.definition_hash == wf.hash and not state.cancel_requested
    assert execution.definition_dict() == wf.to_dict()
    assert not execution.is_terminal and execution.chain_head == event.hash


def test_start_without_input_has_an_empty_input() -> None:
    assert started("a", input_data=None).state().input == {}


@pytest.mark.parametrize(
    ("args", "error_type"),
    [
        ({"at": datetime(2024, 1, 1)}, ValueError),
        ({"definition": WorkflowDefinition(id="wf", steps=(step("a"),))}, ValueError),
        ({"input": ["not", "a", "mapping"]}, TypeError),
        ({"input": {"x": float("nan")}}, ValueError),
    ],
)
def test_start_refuses_bad_arguments(args: dict[str, Any], error_type: type[Exception]) -> None:
    arguments = {"execution_id": "e", "definition": chain_definition("a"), "input": {}, "at": T0}
    with pytest.raises(error_type):
        Execution.start(**{**arguments, **args})


def test_an_execution_cannot_be_made_without_start() -> None:
    with pytest.raises(TypeError):
        Execution()


def test_execution_ids_map_to_one_uuid_each() -> None:
    uuid_text = "0b2c3d4e-aaaa-4bbb-8ccc-1234567890ab"
    assert execution_uuid(uuid_text) == UUID(uuid_text)
    upper = uuid_text.upper()
    assert execution_uuid(upper) != UUID(uuid_text)
    assert execution_uuid("order-1") == execution_uuid("order-1") != execution_uuid("order-2")
    assert execution_uuid("order-1").version == 5
    assert UUID("6f1c1b0e-4d5a-5b8e-9c1f-2a7d3e8b9c40") == EXECUTION_NAMESPACE


# -- step commands --------------------------------------------------------------------


def test_start_and_complete_a_step() -> None:
    execution = started("a", "b")
    execution.start_step("a", {"amount": 5}, at(1))
    event = last_event(execution)
    assert isinstance(event, ev.StepStarted)
    assert (event.step_id, event.attempt, json.loads(event.parameters)) == ("a", 1, {"amount": 5})
    running = execution.state().steps["a"]
    assert (running.status, running.attempts, running.started_at) == ("RUNNING", 1, at(1))
    execution.complete_step("a", {"ok": True}, 250, at(2))
    event = last_event(execution)
    assert isinstance(event, ev.StepCompleted)
    assert (event.attempt, event.duration_ms, json.loads(event.output)) == (1, 250.0, {"ok": True})
    state = execution.state()
    done = state.steps["a"]
    assert (done.status, done.output, done.finished_at) == ("COMPLETED", {"ok": True}, at(2))
    assert done.duration_ms == 250.0
    assert state.outputs == {"a": {"ok": True}}
    assert (state.version, state.updated_at) == (3, at(2))


def test_a_failed_step_is_retried_after_its_scheduled_wait() -> None:
    execution = started("a")
    execution.start_step("a", {}, at(1))
    execution.fail_step("a", {**error(), "extra": "dropped"}, True, 10, at(2))
    event = last_event(execution)
    assert (event.attempt, event.error, event.retryable) == (1, error(), True)
    failed = execution.state().steps["a"]
    assert (failed.status, failed.error, failed.duration_ms) == ("FAILED", error(), 10.0)
    execution.schedule_retry("a", at(30), at(3))
    assert (last_event(execution).next_attempt, last_event(execution).not_before) == (2, at(30))
    waiting = execution.state().steps["a"]
    assert (waiting.status, waiting.not_before, waiting.error) == ("FAILED", at(30), error())
    execution.start_step("a", {}, at(30))
    retried = execution.state().steps["a"]
    assert (retried.status, retried.attempts) == ("RUNNING", 2)
    assert retried.not_before is None and retried.error is None
    assert last_event(execution).attempt == 2


def test_a_timeout_is_a_retryable_failure() -> None:
    execution = started("a")
    execution.start_step("a", {}, at(1))
    execution.time_out_step("a", 5, at(6))
    event = last_event(execution)
    assert isinstance(event, ev.StepTimedOut)
    assert (event.attempt, event.timeout) == (1, 5.0)
    step_state = execution.state().steps["a"]
    assert step_state.status is StepStatus.FAILED
    assert step_state.error == {
        "type": "StepTimeoutError",
        "message": "step 'a' timed out after 5 s",
        "retryable": True,
    }
    assert step_state.finished_at == at(6)


def test_skip_cancel_and_pause_record_their_reason() -> None:
    execution = started("a", "b", "c", "d")
    execution.skip_step("a", "branch_not_taken", at(1))
    execution.cancel_step("b", "cancelled", at(2))
    execution.pause_step("c", "input.name", at(3))
    execution.start_step("d", {}, at(4))
    execution.pause_step("d", "input.card", at(5))
    steps = execution.state().steps
    assert [(s.status, s.reason) for s in steps.values()] == [
        ("SKIPPED", "branch_not_taken"),
        ("CANCELLED", "cancelled"),
        ("PAUSED", "input.name"),
        ("PAUSED", "input.card"),
    ]
    execution.start_step("c", {}, at(6))
    execution.start_step("d", {}, at(6))
    steps = execution.state().steps
    assert (steps["c"].attempts, steps["c"].reason, steps["d"].attempts) == (1, None, 2)


def test_a_running_step_restarts_only_after_it_was_interrupted() -> None:
    execution = started("a")
    execution.start_step("a", {}, at(1))
    error = refused(execution, lambda: execution.start_step("a", {}, at(2)))
    assert described(error) == ("step", "RUNNING", "start", "a")
    execution.interrupt_step("a", at(3))
    assert (last_event(execution).attempt, execution.state().steps["a"].status) == (1, "RUNNING")
    execution.start_step("a", {}, at(4))
    # The interrupted attempt runs again: a crash does not use up the step's retries.
    assert (last_event(execution).attempt, execution.state().steps["a"].attempts) == (1, 1)
    refused(execution, lambda: execution.start_step("a", {}, at(5)))


def test_an_interrupted_step_that_finishes_cannot_be_restarted() -> None:
    execution = started("a")
    execution.start_step("a", {}, at(1))
    execution.interrupt_step("a", at(2))
    execution.fail_step("a", error(), True, 1, at(3))
    execution.start_step("a", {}, at(4))
    refused(execution, lambda: execution.start_step("a", {}, at(5)))


def test_unknown_steps_are_undefined() -> None:
    execution = started("a")
    error = refused(execution, lambda: execution.complete_step("zz", {}, 1, at(1)))
    assert described(error) == ("step", "UNDEFINED", "complete", "zz")
    refused(execution, lambda: execution.record_condition("a", "zz", None, True, at(1)))
    refused(execution, lambda: execution.record_condition("zz", "a", None, True, at(1)))
    refused(execution, lambda: execution.pause("why", at(1), step_id="zz"))


def test_record_condition_changes_nothing_but_the_history() -> None:
    execution = started("a", "b")
    before = execution.state()
    execution.record_condition(None, "b", "input.go", 1, at(1))  # type: ignore[arg-type]
    event = last_event(execution)
    assert own_fields(event) == {
        "source": None,
        "target": "b",
        "condition": "input.go",
        "value": True,
    }
    after = execution.state()
    assert (after.steps, after.version) == (before.steps, before.version + 1)


def test_errors_must_be_error_data() -> None:
    execution = started("a")
    execution.start_step("a", {}, at(1))
    before = execution.version
    with pytest.raises(ValueError, match="retryable"):
        execution.fail_step("a", {"type": "X", "message": "m"}, False, 1, at(2))
    assert execution.version == before


# -- execution commands ---------------------------------------------------------------


def test_provided_input_is_deep_merged() -> None:
    execution = started("a", input_data={"user": {"name": "x", "age": 3}, "keep": 1})
    execution.provide_input({"user": {"name": "y"}, "new": [1]}, "alice", at(1))
    assert last_event(execution).actor == "alice"
    assert execution.state().input == {"user": {"name": "y", "age": 3}, "keep": 1, "new": [1]}
    with pytest.raises(TypeError):
        execution.provide_input("text", None, at(2))  # type: ignore[arg-type]


def test_pause_and_resume() -> None:
    execution = started("a")
    execution.pause("missing input", at(1), step_id="a", missing_var="input.name", actor="engine")
    expected = {"reason": "missing input", "step_id": "a", "missing_var": "input.name"}
    assert own_fields(last_event(execution)) == {**expected, "actor": "engine"}
    assert (execution.status, execution.state().paused_on) == ("PAUSED", "input.name")
    refused(execution, lambda: execution.start_step("a", {}, at(2)))
    refused(execution, lambda: execution.pause("again", at(2)))
    execution.resume("bob", at(3))
    assert (execution.status, execution.state().paused_on) == ("RUNNING", None)


def test_cancel_is_requested_once_then_in_flight_steps_finish() -> None:
    execution = started("a", "b")
    execution.start_step("a", {}, at(1))
    refused(execution, lambda: execution.cancel(at(2)))
    execution.request_cancel("user asked", "carol", at(2), rollback=True)
    assert (execution.cancel_requested, execution.cancel_rolls_back) == (True, True)
    assert execution.state().cancel_requested
    error = refused(execution, lambda: execution.request_cancel("again", None, at(3)))
    assert error.state == "RUNNING (cancel requested)"
    refused(execution, lambda: execution.start_step("b", {}, at(3)))
    execution.fail_step(
        "a", error_data := {"type": "E", "message": "m", "retryable": True}, True, 1, at(4)
    )
    assert execution.state().steps["a"].error == error_data
    refused(execution, lambda: execution.schedule_retry("a", at(9), at(5)))
    execution.cancel(at(5))
    assert execution.status is ExecutionStatus.CANCELLED and execution.is_terminal


@pytest.mark.parametrize("rollback", [False, True])
def test_a_paused_execution_can_be_cancelled_or_rolled_back(rollback: bool) -> None:
    execution = started("a")
    execution.pause("why", at(1), missing_var="input.x")
    execution.request_cancel("stop", None, at(2), rollback=rollback)
    if rollback:
        execution.start_rollback("stop", at(3))
    else:
        execution.cancel(at(3))
    status = "ROLLING_BACK" if rollback else "CANCELLED"
    assert (execution.status, execution.state().paused_on) == (status, None)


def test_rollback_compensates_completed_steps_in_reverse_completion_order() -> None:
    execution = started("a", "b", "c", "d", compensate=("a", "b", "d"))
    for index, step_id in enumerate(["b", "a", "c", "d"]):
        execution.start_step(step_id, {}, at(index))
        execution.complete_step(step_id, {"id": step_id}, 1, at(index))
    assert execution.steps_to_compensate() == ["d", "a", "b"]
    refused(execution, lambda: execution.start_compensation("d", at(5)))
    execution.start_rollback("step e failed", at(5))
    execution.start_compensation("d", at(6))
    assert execution.steps_to_compensate() == ["a", "b"]
    execution.roll_back_step("d", {"refund": 1}, at(7))
    execution.start_compensation("a", at(8))
    execution.fail_compensation("a", error("RefundError"), at(9))
    state = execution.state()
    assert state.steps["d"].status is StepStatus.ROLLED_BACK
    assert state.steps["d"].output == {"id": "d"}
    assert state.steps["d"].compensation_output == {"refund": 1}
    assert state.steps["a"].status is StepStatus.COMPENSATION_FAILED
    assert state.steps["a"].error == error("RefundError")
    assert state.outputs == {"b": {"id": "b"}, "c": {"id": "c"}}
    refused(execution, lambda: execution.start_compensation("c", at(10)))
    execution.fail_rollback("a", error("RefundError"), at(10))
    assert execution.status == "ROLLBACK_FAILED"
    assert execution.state().error == error("RefundError")


def test_in_flight_steps_finish_while_rolling_back() -> None:
    execution = started("a", "b", compensate=("a",))
    execution.start_step("a", {}, at(1))
    execution.complete_step("a", 1, 1, at(2))
    execution.start_step("b", {}, at(3))
    execution.start_rollback("cancelled", at(4))
    execution.complete_step("b", 2, 1, at(5))
    execution.start_compensation("a", at(6))
    execution.roll_back_step("a", None, at(7))
    execution.finish_rollback(at(8))
    assert execution.status is ExecutionStatus.ROLLED_BACK


def test_complete_and_fail_end_the_execution() -> None:
    execution = started("a")
    execution.complete({"a": 1}, at(1))
    assert (execution.status, json.loads(last_event(execution).outputs)) == ("COMPLETED", {"a": 1})
    failed = started("a")
    failed.fail("a", error("ConditionError"), at(1))
    assert own_fields(last_event(failed)) == {"step_id": "a", "error": error("ConditionError")}
    assert (failed.status, failed.state().error) == ("FAILED", error("ConditionError"))
