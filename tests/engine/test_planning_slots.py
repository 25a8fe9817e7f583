"""A plan given no slot withholds what was due, so the engine waits for one."""

from __future__ import annotations

from flowledger.domain.status import ExecutionStatus
from flowledger.engine.decisions import CompensateStep, StartRollback, StartStep
from tests.engine.test_planning_driver import Driver, Fail, action, steps_workflow


def test_a_start_withheld_for_want_of_a_slot_is_said() -> None:
    driver = Driver(steps_workflow(action("a", depends_on=[]), action("b", depends_on=[])))
    planned = driver.plan(max_starts=0)
    assert planned.decisions == () and planned.withheld
    one = driver.plan(max_starts=1)
    assert one.decisions == (StartStep("a", {}),) and one.withheld
    both = driver.plan(max_starts=2)
    assert len(both.decisions) == 2 and not both.withheld


def test_a_plan_with_nothing_to_start_withholds_nothing() -> None:
    driver = Driver(steps_workflow(action("a")))
    driver.advance()
    assert not driver.plan(max_starts=0).withheld  # a is in flight: nothing else is due


def test_a_rollback_starts_and_withholds_its_first_compensation() -> None:
    undo = {"action": "undo", "parameters": {}}
    driver = Driver(steps_workflow(action("a", compensate=undo), action("b")))
    driver.advance()
    driver.finish("a", {"done": True})
    driver.advance()
    driver.finish("b", Fail())
    planned = driver.advance(max_starts=0)
    assert [type(d) for d in planned.decisions][-1] is StartRollback and planned.withheld
    assert driver.state().status is ExecutionStatus.ROLLING_BACK
    waiting = driver.plan(max_starts=0)
    assert waiting.decisions == () and waiting.withheld
    assert driver.plan(max_starts=1).decisions == (CompensateStep("a", "undo", {}),)
