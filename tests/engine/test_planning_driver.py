"""A test driver for the planner, and tests of how decisions map to aggregate commands.

The driver runs a real ``Execution`` the way the engine does: plan, apply the decisions
(every one must be legal), simulate the outcome of each started action at once, plan
again. Time only moves when the driver is told to, or to a plan's ``wake_at``. Other
planning tests import it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowledger.domain import events as ev
from flowledger.domain.definition import WorkflowDefinition, load_definition
from flowledger.domain.execution import Execution
from flowledger.domain.state import ExecutionState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.decisions import (
    CancelExecution,
    CancelStep,
    CompensateStep,
    CompleteExecution,
    CompleteTrigger,
    Decision,
    FailExecution,
    FailRollback,
    FinishRollback,
    PauseExecution,
    PauseStep,
    Plan,
    RecordCondition,
    SkipStep,
    StartRollback,
    StartStep,
)
from flowledger.engine.planning import plan

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Fail:
    """The simulated outcome of an attempt that raised.

    Attributes:
        retry_in: Seconds until the retry (the engine's ``schedule_retry``), or None for
            a final failure.
    """

    retry_in: float | None = None
    message: str = "boom"
    kind: str = "ValueError"

    @property
    def error(self) -> dict[str, Any]:
        return {"type": self.kind, "message": self.message, "retryable": self.retry_in is not None}


def steps_workflow(*steps: dict[str, Any], workflow_id: str = "wf") -> WorkflowDefinition:
    return load_definition({"id": workflow_id, "steps": list(steps)})


def action(step_id: str, **options: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "noop", **options}


class Driver:
    """Runs one execution through plans, applying every decision to the aggregate."""

    def __init__(self, definition: WorkflowDefinition | dict[str, Any], input: Any = None):
        self.definition = (
            definition
            if isinstance(definition, WorkflowDefinition)
            else load_definition(definition)
        )
        self.now = T0
        self.execution = Execution.start("ex-1", self.definition, input, self.now)
        self.plans: list[Plan] = []

    # -- planning -------------------------------------------------------------------------

    def plan(self, **options: Any) -> Plan:
        planned = plan(self.execution, self.definition, self.now, **options)
        again = plan(self.execution, self.definition, self.now, **options)
        assert planned == again, "planning is not deterministic"
        return planned

    def advance(self, **options: Any) -> Plan:
        """Plan and apply the decisions (one second later than the last plan)."""
        self.now += timedelta(seconds=1)
        planned = self.plan(**options)
        planned.apply(self.execution, self.now)
        self.plans.append(planned)
        return planned

    def run(
        self,
        outcomes: Mapping[str, Any] | None = None,
        *,
        compensations: Mapping[str, Any] | None = None,
        hold: Collection[str] = (),
        hold_compensations: Collection[str] = (),
        limit: int = 500,
    ) -> ExecutionState:
        """Advance until nothing more happens without an outside command.

        Args:
            outcomes: Step id to its outcome: an output, a :class:`Fail`, or a list of
                them, one per attempt (the last repeats). Default: ``{"from": id}``.
            compensations: Step id to the outcome of its compensation (output or Fail).
            hold: Steps whose attempts stay in flight. Every other step found RUNNING
                gets its outcome after each plan.
            hold_compensations: Steps whose compensations stay in flight; every other
                step found COMPENSATING gets its outcome after each plan.
            limit: Plans at most (a test fails rather than loop).
        """
        for _ in range(limit):
            planned = self.advance()
            finished = False
            for step_id, step in self.state().steps.items():
                if step.status is StepStatus.RUNNING and step_id not in hold:
                    self.finish(step_id, _outcome(outcomes, step_id, self))
                    finished = True
                elif step.status is StepStatus.COMPENSATING and step_id not in hold_compensations:
                    done = (compensations or {}).get(step_id, {"undone": True})
                    self.finish_compensation(step_id, done)
                    finished = True
            if planned.decisions or finished:
                continue
            if planned.wake_at is None or planned.in_flight:
                return self.state()
            self.now = planned.wake_at
        raise AssertionError(f"no rest after {limit} plans")

    # -- simulated outcomes -----------------------------------------------------------------

    def finish(self, step_id: str, outcome: Any) -> None:
        """Record the outcome of the running attempt of ``step_id``."""
        if isinstance(outcome, Fail):
            self.execution.fail_step(
                step_id, outcome.error, outcome.retry_in is not None, 1.0, self.now
            )
            if outcome.retry_in is not None:
                not_before = self.now + timedelta(seconds=outcome.retry_in)
                self.execution.schedule_retry(step_id, not_before, self.now)
        else:
            self.execution.complete_step(step_id, outcome, 1.0, self.now)

    def finish_compensation(self, step_id: str, outcome: Any) -> None:
        if isinstance(outcome, Fail):
            self.execution.fail_compensation(step_id, outcome.error, self.now)
        else:
            self.execution.roll_back_step(step_id, outcome, self.now)

    # -- reading ----------------------------------------------------------------------------

    def state(self) -> ExecutionState:
        return self.execution.state()

    def statuses(self) -> dict[str, str]:
        return {step_id: step.status.value for step_id, step in self.state().steps.items()}

    def events(self, kind: type[ev.ExecutionEvent]) -> list[Any]:
        return [event for event in self.execution.pending_events if isinstance(event, kind)]

    def decisions(self, kind: type[Decision] | None = None) -> list[Decision]:
        every = [decision for planned in self.plans for decision in planned.decisions]
        return every if kind is None else [d for d in every if isinstance(d, kind)]


def _outcome(outcomes: Mapping[str, Any] | None, step_id: str, driver: Driver) -> Any:
    given = (outcomes or {}).get(step_id, {"from": step_id})
    if not isinstance(given, list):
        return given
    attempt = driver.state().steps[step_id].attempts
    return given[min(attempt, len(given)) - 1]


# -- decisions map to aggregate commands -------------------------------------------------


def test_each_decision_applies_its_command() -> None:
    driver = Driver(steps_workflow(action("a"), action("b", compensate={"action": "undo"})))
    execution, at = driver.execution, T0
    RecordCondition(None, "a", "true", True).apply(execution, at)
    StartStep("a", {"x": 1}).apply(execution, at)
    PauseStep("b", "input.x").apply(execution, at)
    PauseExecution("b", "input.x").apply(execution, at)
    state = driver.state()
    assert state.status is ExecutionStatus.PAUSED and state.paused_on == "input.x"
    paused = driver.events(ev.ExecutionPaused)[-1]
    assert (paused.reason, paused.step_id, paused.missing_var) == ("missing_input", "b", "input.x")
    assert driver.events(ev.StepStarted)[-1].parameters == '{"x":1}'
    condition = driver.events(ev.ConditionEvaluated)[-1]
    assert (condition.source, condition.target, condition.condition, condition.value) == (
        None,
        "a",
        "true",
        True,
    )


def test_a_trigger_starts_and_completes_with_its_output() -> None:
    driver = Driver({"id": "g", "nodes": [{"id": "t", "type": "trigger"}]}, {"n": 1})
    CompleteTrigger("t", {"n": 1}).apply(driver.execution, T0)
    step = driver.state().steps["t"]
    assert (step.status, step.output, step.attempts, step.duration_ms) == (
        StepStatus.COMPLETED,
        {"n": 1},
        1,
        0.0,
    )


def test_ending_decisions_apply_their_commands() -> None:
    wf = steps_workflow(action("a", compensate={"action": "undo"}), action("b"))
    endings: list[tuple[list[Decision], ExecutionStatus]] = [
        ([CompleteExecution({"a": 1})], ExecutionStatus.COMPLETED),
        ([FailExecution("a", Fail().error)], ExecutionStatus.FAILED),
        ([StartRollback("r"), FinishRollback()], ExecutionStatus.ROLLED_BACK),
        ([StartRollback("r"), FailRollback("a", Fail().error)], ExecutionStatus.ROLLBACK_FAILED),
    ]
    for decisions, status in endings:
        driver = Driver(wf)
        Plan(tuple(decisions)).apply(driver.execution, T0)
        assert driver.state().status is status
    driver = Driver(wf)
    driver.execution.request_cancel("stop", None, T0)
    Plan((CancelStep("b", "cancelled"), CancelExecution())).apply(driver.execution, T0)
    assert driver.statuses()["b"] == "CANCELLED"
    assert driver.state().status is ExecutionStatus.CANCELLED


def test_compensate_step_starts_the_compensation_and_skip_skips() -> None:
    driver = Driver(steps_workflow(action("a", compensate={"action": "undo"}), action("b")))
    StartStep("a", {}).apply(driver.execution, T0)
    driver.finish("a", {})
    Plan((SkipStep("b", "why"), StartRollback("r"), CompensateStep("a", "undo", {}))).apply(
        driver.execution, T0
    )
    assert driver.statuses() == {"a": "COMPENSATING", "b": "SKIPPED"}
    assert driver.state().steps["b"].reason == "why"


def test_only_starts_and_compensations_run_actions() -> None:
    running = {StartStep, CompensateStep}
    every = [
        RecordCondition, SkipStep, StartStep, CompleteTrigger, PauseStep, PauseExecution,
        CancelStep, CancelExecution, StartRollback, CompensateStep, FinishRollback,
        FailRollback, CompleteExecution, FailExecution,
    ]  # fmt: skip
    assert {kind for kind in every if kind.runs_action} == running


def test_plan_flags() -> None:
    assert Plan().settled and not Plan().idle
    assert Plan(in_flight=("a",)).idle and not Plan(in_flight=("a",)).settled
    waiting = Plan(wake_at=T0)
    assert not waiting.idle and not waiting.settled
    busy = Plan((StartStep("a", {}),), in_flight=("b",))
    assert not busy.idle and not busy.settled


def test_the_driver_refuses_to_loop_forever() -> None:
    driver = Driver(steps_workflow(action("a")))
    with pytest.raises(AssertionError, match="no rest"):
        driver.run({"a": Fail(retry_in=1)}, limit=5)
