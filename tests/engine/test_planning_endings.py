"""The planner when an execution ends: failure, rollback, cancel, pause, terminal states."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.domain import events as ev
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.decisions import (
    CancelExecution,
    CancelStep,
    CompensateStep,
    FailExecution,
    FailRollback,
    FinishRollback,
    Plan,
    StartRollback,
    StartStep,
)
from flowledger.engine.planning import DefinitionCache, definition_of
from tests.engine.test_planning_driver import Driver, Fail, action, steps_workflow


def undo(step_id: str, **options: Any) -> dict[str, Any]:
    """An action step compensated by ``undo`` with its own output as ``was``."""
    return action(
        step_id,
        compensate={"action": "undo", "parameters": {"was": f"${{{step_id}.output}}"}},
        **options,
    )


ORDER = steps_workflow(
    undo("reserve", depends_on=[]),
    undo("charge", depends_on=[]),
    action("log", depends_on=["reserve"]),
    undo("ship", depends_on=["charge", "log"]),
    action("mail", depends_on=["ship"]),
)


# -- failure ----------------------------------------------------------------------------


def test_a_failure_without_compensation_fails_the_execution_with_the_steps_error() -> None:
    driver = Driver(steps_workflow(action("a"), action("b"), action("c")))
    state = driver.run({"b": Fail(message="card declined", kind="Declined")})
    assert state.status is ExecutionStatus.FAILED
    assert state.error == Fail(message="card declined", kind="Declined").error
    assert driver.decisions()[-2:] == [
        CancelStep("c", "execution_failed"),
        FailExecution("b", Fail(message="card declined", kind="Declined").error),
    ]
    assert driver.statuses() == {"a": "COMPLETED", "b": "FAILED", "c": "CANCELLED"}


def test_a_failure_starts_nothing_new_and_cancels_the_steps_that_never_ran() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]), action("b", depends_on=[]), action("c", depends_on=["b"])
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", Fail())
    driver.finish("b", {})
    planned = driver.advance()
    assert planned.decisions == (
        CancelStep("c", "execution_failed"),
        FailExecution("a", Fail().error),
    )


def test_in_flight_steps_finish_before_the_failure_is_handled() -> None:
    wf = steps_workflow(
        undo("a", depends_on=[]), undo("b", depends_on=[]), action("c", depends_on=["a", "b"])
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", Fail())
    planned = driver.advance()
    assert planned.idle and planned.in_flight == ("b",)
    driver.finish("b", {"done": 1})
    assert driver.advance().decisions == (
        CancelStep("c", "execution_failed"),
        StartRollback("step 'a' failed: boom", "a", Fail().error),
        CompensateStep("b", "undo", {"was": {"done": 1}}),
    )


def test_the_first_step_to_fail_is_named() -> None:
    wf = steps_workflow(action("a", depends_on=[]), action("b", depends_on=[]))
    driver = Driver(wf)
    driver.advance()
    driver.finish("b", Fail(message="first"))
    driver.advance()
    driver.finish("a", Fail(message="second"))
    driver.run()
    assert driver.decisions(FailExecution) == [FailExecution("b", Fail(message="first").error)]


def test_a_failure_compensates_completed_steps_in_reverse_completion_order() -> None:
    driver = Driver(ORDER)
    driver.advance()
    driver.finish("charge", {"paid": 5})
    driver.finish("reserve", {"held": 1})
    state = driver.run({"mail": Fail()})
    assert state.status is ExecutionStatus.ROLLED_BACK
    assert [d.step_id for d in driver.decisions(CompensateStep)] == ["ship", "reserve", "charge"]
    assert driver.decisions(CompensateStep)[1] == CompensateStep(
        "reserve", "undo", {"was": {"held": 1}}
    )
    assert driver.statuses() == {
        "reserve": "ROLLED_BACK",
        "charge": "ROLLED_BACK",
        "log": "COMPLETED",
        "ship": "ROLLED_BACK",
        "mail": "FAILED",
    }
    # One compensation at a time.
    assert all(sum(isinstance(d, CompensateStep) for d in p.decisions) <= 1 for p in driver.plans)
    assert driver.decisions()[-1] == FinishRollback()


def test_a_failed_compensation_fails_the_rollback() -> None:
    driver = Driver(ORDER)
    state = driver.run({"mail": Fail()}, compensations={"charge": Fail(message="gone")})
    assert state.status is ExecutionStatus.ROLLBACK_FAILED
    assert driver.decisions()[-1] == FailRollback("charge", Fail(message="gone").error)
    assert driver.statuses()["charge"] == "COMPENSATION_FAILED"
    assert driver.statuses()["reserve"] == "COMPLETED"  # never compensated
    assert state.error == Fail(message="gone").error


def test_a_compensation_waits_while_another_is_in_flight() -> None:
    driver = Driver(ORDER)
    state = driver.run({"mail": Fail()}, hold_compensations={"ship"})
    assert state.status is ExecutionStatus.ROLLING_BACK
    planned = driver.advance()
    assert planned.idle and planned.in_flight == ("ship",)
    driver.finish_compensation("ship", {})
    assert driver.advance().decisions == (
        CompensateStep("charge", "undo", {"was": {"from": "charge"}}),
    )


def test_a_compensation_with_a_missing_value_fails_the_rollback() -> None:
    wf = steps_workflow(
        action("a", compensate={"action": "undo", "parameters": {"id": "${a.output.id}"}}),
        action("b"),
    )
    driver = Driver(wf)
    state = driver.run({"a": {"no_id": True}, "b": Fail()})
    assert state.status is ExecutionStatus.ROLLBACK_FAILED
    rollback_failure = driver.decisions(FailRollback)[0]
    assert rollback_failure.step_id == "a"
    assert rollback_failure.error["type"] == "MissingInputError"
    assert driver.statuses()["a"] == "COMPLETED"


def test_a_failure_while_paused_waits_for_the_resume() -> None:
    wf = steps_workflow(
        action("slow", depends_on=[]), action("ask", depends_on=[], parameters={"v": "${input.v}"})
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("slow", Fail())
    assert driver.advance().settled
    driver.execution.resume(None, driver.now)
    assert driver.advance().decisions == (
        CancelStep("ask", "execution_failed"),
        FailExecution("slow", Fail().error),
    )


# -- cancel -----------------------------------------------------------------------------


def test_cancel_waits_for_steps_in_flight_then_cancels_the_rest() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]), action("b", depends_on=[]), action("c", depends_on=["a"])
    )
    driver = Driver(wf)
    driver.advance()
    driver.execution.request_cancel("enough", "ops", driver.now)
    driver.finish("a", {})
    planned = driver.advance()
    assert planned.idle and planned.in_flight == ("b",)
    driver.finish("b", {})
    assert driver.advance().decisions == (CancelStep("c", "cancelled"), CancelExecution())
    assert driver.state().status is ExecutionStatus.CANCELLED
    assert driver.statuses() == {"a": "COMPLETED", "b": "COMPLETED", "c": "CANCELLED"}


def test_cancel_with_rollback_compensates_what_completed() -> None:
    driver = Driver(ORDER)
    driver.advance()
    driver.finish("reserve", {"held": 1})
    driver.execution.request_cancel("stop", None, driver.now, rollback=True)
    state = driver.run()
    assert state.status is ExecutionStatus.ROLLED_BACK
    assert driver.decisions(StartRollback) == [StartRollback("cancelled")]
    assert [d.step_id for d in driver.decisions(CompensateStep)] == ["charge", "reserve"]
    assert driver.statuses()["log"] == "CANCELLED"


def test_cancel_with_rollback_and_nothing_to_compensate_ends_cancelled() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    driver.run({"a": {}}, hold={"b"})
    driver.execution.request_cancel("stop", None, driver.now, rollback=True)
    driver.finish("b", {})
    assert driver.run().status is ExecutionStatus.CANCELLED


def test_cancel_takes_precedence_over_a_failure() -> None:
    wf = steps_workflow(
        undo("a", depends_on=[]), action("b", depends_on=[]), action("c", depends_on=["b"])
    )
    driver = Driver(wf)
    driver.run({"b": Fail()}, hold={"a"})
    driver.execution.request_cancel("stop", None, driver.now)
    driver.finish("a", {})
    assert driver.run().status is ExecutionStatus.CANCELLED
    assert driver.statuses() == {"a": "COMPLETED", "b": "FAILED", "c": "CANCELLED"}


def test_a_paused_execution_can_be_cancelled() -> None:
    driver = Driver(steps_workflow(action("a", parameters={"v": "${input.v}"}), action("b")))
    driver.advance()
    driver.execution.request_cancel("stop", None, driver.now)
    assert driver.advance().decisions == (
        CancelStep("a", "cancelled"),
        CancelStep("b", "cancelled"),
        CancelExecution(),
    )
    assert driver.state().status is ExecutionStatus.CANCELLED


def test_a_step_waiting_for_a_retry_is_cancelled_with_the_execution() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    driver.advance()
    driver.finish("a", Fail(retry_in=60))
    driver.execution.request_cancel("stop", None, driver.now)
    state = driver.run()
    assert state.status is ExecutionStatus.CANCELLED
    assert driver.statuses() == {"a": "CANCELLED", "b": "CANCELLED"}
    assert driver.state().steps["a"].attempts == 1  # its retry never ran


def test_an_interrupted_step_is_cancelled_on_cancel() -> None:
    driver = Driver(steps_workflow(action("a")))
    driver.advance()
    driver.execution.interrupt_step("a", driver.now)
    driver.execution.request_cancel("stop", None, driver.now)
    assert driver.plan().idle
    assert driver.advance(interrupted=["a"]).decisions == (
        CancelStep("a", "cancelled"),
        CancelExecution(),
    )


# -- pause and terminal states ----------------------------------------------------------


def test_an_explicit_pause_starts_nothing_until_resumed() -> None:
    driver = Driver(
        steps_workflow(action("a", depends_on=[]), action("b", depends_on=[]), action("c"))
    )
    driver.advance()
    driver.execution.pause("operator", driver.now)
    planned = driver.advance()
    assert planned.idle and planned.in_flight == ("a", "b")
    driver.finish("a", {})
    driver.finish("b", {})
    assert driver.advance() == Plan()
    driver.execution.resume(None, driver.now)
    assert driver.advance().decisions == (StartStep("c", {}),)


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ({}, ExecutionStatus.COMPLETED),
        ({"a": Fail()}, ExecutionStatus.FAILED),
        ({"b": Fail()}, ExecutionStatus.ROLLED_BACK),
    ],
)
def test_a_terminal_execution_plans_nothing(
    outcomes: dict[str, Any], status: ExecutionStatus
) -> None:
    driver = Driver(steps_workflow(undo("a"), action("b")))
    assert driver.run(outcomes).status is status
    assert driver.advance() == Plan()


def test_a_cancelled_execution_plans_nothing() -> None:
    driver = Driver(steps_workflow(action("a")))
    driver.execution.request_cancel("stop", None, driver.now)
    assert driver.run().status is ExecutionStatus.CANCELLED
    assert driver.advance() == Plan()
    assert len(driver.events(ev.ExecutionCancelled)) == 1


# -- definitions ------------------------------------------------------------------------


def test_definition_of_loads_each_definition_once() -> None:
    cache = DefinitionCache(size=2)
    first, second, third = (Driver(steps_workflow(action(name))) for name in ("a", "b", "c"))
    loaded = cache.definition_of(first.execution)
    assert loaded == first.definition and first.definition.hash in cache
    assert cache.definition_of(first.execution) is loaded
    cache.definition_of(second.execution)
    cache.definition_of(first.execution)  # most recently used
    cache.definition_of(third.execution)
    assert len(cache) == 2 and second.definition.hash not in cache
    assert definition_of(first.execution) is definition_of(first.execution)
