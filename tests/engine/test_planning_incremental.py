"""Planning reads only what changed: the aggregate's change log, the frontier, ``replan``.

A plan must be the same whether the planner reads the steps through a frontier it keeps
up to date, or reads every step from scratch: these tests compare the two after the
changes that are easy to get wrong (retries, ``continue_on_error``, interruptions,
compensations), and check that following changes leaves the aggregate as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.domain import Snapshot

from flowledger.domain.execution import Execution
from flowledger.engine.decisions import (
    CancelExecution,
    CancelStep,
    FailExecution,
    Plan,
    RecordCondition,
    SkipStep,
    StartStep,
)
from flowledger.engine.frontier import Frontier, frontier_of
from flowledger.engine.planning import DefinitionCache, definition_of, plan, remember_definition
from tests.engine.test_planning_driver import T0, Driver, Fail, action, steps_workflow

FIELDS = (
    "status",
    "not_before",
    "unresolved",
    "ready",
    "paused",
    "in_flight",
    "failed",
    "compensation_failed",
    "restless",
)


def fields(frontier: Frontier) -> dict[str, Any]:
    return {name: getattr(frontier, name) for name in FIELDS}


def from_scratch(driver: Driver) -> dict[str, Any]:
    """The frontier of a copy of the execution, which no one has followed yet."""
    fresh = Frontier(driver.definition)
    fresh.refresh(copy.deepcopy(driver.execution))
    return fields(fresh)


def followed(driver: Driver) -> dict[str, Any]:
    """The frontier the planner keeps for the execution, brought up to its version."""
    frontier = frontier_of(driver.execution, driver.definition)
    with frontier.lock:
        frontier.refresh(driver.execution)
        return fields(frontier)


def assert_fresh(driver: Driver) -> None:
    assert followed(driver) == from_scratch(driver)


def recorded(execution: Execution) -> dict[str, Any]:
    """What the aggregate holds, but for the events it has not saved yet."""
    return {name: value for name, value in vars(execution).items() if name != "_pending_events"}


# -- the aggregate's change log ---------------------------------------------------------


def test_changed_steps_are_named_once_followed() -> None:
    execution = Driver(steps_workflow(action("a"), action("b"), action("c"))).execution
    start = execution.version
    assert execution.steps_changed_since(start) is None  # not followed until now
    execution.start_step("a", {}, T0)
    execution.record_condition("a", "b", "true", True, T0)
    execution.complete_step("a", {"n": 1}, 1.0, T0)
    execution.start_step("b", {}, T0)
    assert execution.steps_changed_since(start) == ["a", "a", "b"]
    middle = execution.version
    execution.complete_step("b", {}, 1.0, T0)
    assert execution.steps_changed_since(middle) == ["b"]
    assert execution.steps_changed_since(execution.version) == []


def test_changes_before_an_earlier_read_or_after_the_version_are_unknown() -> None:
    execution = Driver(steps_workflow(action("a"))).execution
    execution.steps_changed_since(0)
    execution.start_step("a", {}, T0)
    assert execution.steps_changed_since(execution.version) == []
    assert execution.steps_changed_since(execution.version - 1) is None
    assert execution.steps_changed_since(execution.version + 1) is None


def test_following_changes_is_invisible_to_equality_snapshots_and_replay() -> None:
    driver = Driver(steps_workflow(action("a"), action("b", parameters={"v": "${a.output}"})))
    execution = driver.execution
    attributes = set(vars(execution))
    driver.run({"a": {"n": 1}}, hold={"b"})
    assert set(vars(execution)) == attributes
    replayed: Execution | None = None
    for event in execution.pending_events:
        replayed = event.mutate(replayed)
    assert replayed is not None and recorded(replayed) == recorded(execution)
    assert replayed.steps_changed_since(replayed.version) is None  # not followed
    restored = Snapshot.take(execution).mutate(None)
    assert recorded(restored) == recorded(execution)
    assert plan(restored, driver.definition, driver.now) == driver.plan()


def test_one_step_reads_as_the_whole_state_has_it() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")), {"k": 1})
    driver.advance()
    driver.finish("a", Fail(retry_in=60))
    driver.execution.provide_input({"k": {"j": 2}}, None, driver.now)
    execution, state = driver.execution, driver.state()
    assert execution.step_ids() == list(state.steps)
    for step_id, step in state.steps.items():
        assert execution.step_state(step_id) == step
        assert execution.step_status(step_id) is step.status
        assert execution.step_not_before(step_id) == step.not_before
    assert execution.execution_input() == state.input
    with pytest.raises(KeyError):
        execution.step_status("missing")


# -- the frontier -----------------------------------------------------------------------


def test_a_step_waiting_for_a_retry_is_not_at_rest_until_it_fails_for_good() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    driver.advance()
    driver.finish("a", Fail(retry_in=10))
    frontier = followed(driver)
    assert frontier["not_before"] == {"a": driver.now + timedelta(seconds=10)}
    assert frontier["ready"] == set() and frontier["failed"] == set()
    assert frontier["unresolved"]["b"] == 1 and frontier["restless"] == 2
    driver.now += timedelta(seconds=10)
    assert driver.advance().decisions == (StartStep("a", {}),)
    assert followed(driver)["in_flight"] == {"a"} and followed(driver)["not_before"] == {}
    driver.finish("a", Fail())
    frontier = followed(driver)
    assert frontier["failed"] == {"a"} and frontier["unresolved"]["b"] == 0
    assert_fresh(driver)


def test_a_failure_waiting_for_a_retry_that_comes_to_rest_frees_what_follows() -> None:
    driver = Driver(steps_workflow(action("a", continue_on_error=True), action("b")))
    driver.advance()
    driver.execution.fail_step("a", Fail().error, False, 1.0, driver.now)
    assert followed(driver)["ready"] == {"b"}
    driver.execution.schedule_retry("a", driver.now + timedelta(seconds=5), driver.now)
    frontier = followed(driver)
    assert frontier["ready"] == set() and frontier["unresolved"]["b"] == 1
    assert frontier["failed"] == set()  # continue_on_error: never the execution's failure
    assert_fresh(driver)


def test_a_step_waiting_for_a_retry_leaves_that_state_when_cancelled() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    driver.advance()
    driver.finish("a", Fail(retry_in=60))
    driver.execution.request_cancel("stop", None, driver.now)
    assert driver.advance().decisions == (
        CancelStep("a", "cancelled"),
        CancelStep("b", "cancelled"),
        CancelExecution(),
    )
    assert followed(driver)["not_before"] == {} and followed(driver)["restless"] == 0
    assert_fresh(driver)


def test_many_changes_between_two_plans_are_read_together() -> None:
    wf = steps_workflow(
        action("a", depends_on=[]),
        action("b", depends_on=[]),
        action("c", depends_on=["a", "b"]),
        action("d", depends_on=["c"], compensate={"action": "undo"}),
        action("e", depends_on=["d"]),
    )
    driver = Driver(wf)
    driver.advance()
    assert_fresh(driver)
    execution = driver.execution
    execution.complete_step("a", {}, 1.0, driver.now)
    execution.interrupt_step("b", driver.now)
    execution.start_step("b", {}, driver.now)
    execution.complete_step("b", {}, 1.0, driver.now)
    execution.start_step("c", {}, driver.now)
    execution.complete_step("c", {}, 1.0, driver.now)
    assert_fresh(driver)
    state = driver.run({"e": Fail()}, compensations={"d": Fail(message="gone")})
    assert state.status.value == "ROLLBACK_FAILED"
    assert followed(driver)["compensation_failed"] == {"d"}
    assert_fresh(driver)


def test_each_execution_object_has_its_own_frontier() -> None:
    wf = steps_workflow(action("a"), action("b"), action("c"))
    first, second = Driver(wf), Driver(wf)
    first.run({}, hold={"b"})
    second.advance()
    assert first.plan() == Plan(in_flight=("b",))
    assert second.plan() == Plan(in_flight=("a",))
    reloaded = copy.deepcopy(first.execution)
    first.finish("b", {})
    reloaded.complete_step("b", {"other": 1}, 1.0, first.now)
    assert plan(reloaded, wf, first.now) == first.plan() == Plan((StartStep("c", {}),))
    assert frontier_of(reloaded, wf) is not frontier_of(first.execution, wf)


def test_a_refresh_that_fails_reads_every_step_the_next_time() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    driver.advance()
    frontier = frontier_of(driver.execution, driver.definition)
    driver.finish("a", {})

    def broken(*arguments: Any) -> None:
        raise RuntimeError("interrupted")

    frontier._read = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        driver.plan()
    del frontier._read
    assert frontier.version == -1
    assert driver.advance().decisions == (StartStep("b", {}),)
    assert_fresh(driver)


def test_planners_in_several_threads_take_turns_on_one_execution() -> None:
    wf = steps_workflow(*(action(f"s{i}", depends_on=[]) for i in range(40)))
    driver = Driver(wf)
    driver.advance(max_starts=10)
    for i in range(10):
        driver.finish(f"s{i}", {"i": i})
    expected = plan(copy.deepcopy(driver.execution), wf, driver.now, max_starts=7)
    barrier = threading.Barrier(8)

    def planned(_: int) -> Plan:
        barrier.wait()
        return plan(driver.execution, wf, driver.now, max_starts=7)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(planned, range(8))) == [expected] * 8
    assert_fresh(driver)


# -- plans that need a second look --------------------------------------------------------


def test_a_plan_cut_short_by_a_condition_error_asks_to_be_followed_by_another() -> None:
    wf = steps_workflow(
        action("a"),
        action("b", depends_on=[{"step": "a", "condition": "false"}]),
        action("c", depends_on=[{"step": "a", "condition": "output.missing"}]),
    )
    driver = Driver(wf)
    driver.advance()
    driver.finish("a", {})
    first = driver.advance()
    assert first.decisions == (
        RecordCondition("a", "b", "false", False),
        SkipStep("b", "branch_not_taken"),
    )
    assert first.replan
    second = driver.advance()
    assert [type(d) for d in second.decisions] == [CancelStep, FailExecution]
    assert not second.replan


@pytest.mark.parametrize(
    "outcomes",
    [{}, {"b": [Fail()]}, {"b": [Fail(retry_in=3), {}]}, {"a": [Fail(retry_in=1), Fail()]}],
)
def test_after_a_plan_that_does_not_ask_for_another_nothing_is_left_to_decide(
    outcomes: dict[str, Any],
) -> None:
    wf = steps_workflow(
        action("a", compensate={"action": "undo"}, depends_on=[]),
        action("b", depends_on=[], parameters={"v": "${input.v}"}),
        action("c", depends_on=["a", "b"]),
    )
    driver = Driver(wf)
    for _ in range(30):
        planned = driver.advance()
        assert not planned.replan
        again = plan(driver.execution, wf, driver.now - timedelta(seconds=1))
        assert again.decisions == ()
        if driver.execution.is_terminal:
            break
        if driver.state().status.value == "PAUSED":
            driver.execution.provide_input({"v": 1}, None, driver.now)
            driver.execution.resume(None, driver.now)
        for step_id, step in driver.state().steps.items():
            if step.status.value == "RUNNING":
                attempts = outcomes.get(step_id, [{}])
                driver.finish(step_id, attempts[min(step.attempts, len(attempts)) - 1])
            elif step.status.value == "COMPENSATING":
                driver.finish_compensation(step_id, {})
        if planned.wake_at is not None and not planned.decisions:
            driver.now = planned.wake_at
    assert driver.execution.is_terminal


# -- definitions ------------------------------------------------------------------------


def test_a_definition_the_engine_loaded_is_not_loaded_again() -> None:
    driver = Driver(steps_workflow(action("a"), action("b")))
    cache = DefinitionCache()
    cache.add(driver.definition)
    assert cache.definition_of(driver.execution) is driver.definition
    forged = dataclasses.replace(driver.definition, id="other")
    with pytest.raises(ValueError, match="not of its canonical form"):
        cache.add(forged)
    remember_definition(driver.definition)
    assert definition_of(driver.execution) is driver.definition
