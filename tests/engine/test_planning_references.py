"""Missing values at run time: an input pauses, a step result that does not exist fails."""

from __future__ import annotations

from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.decisions import FailExecution, PauseExecution
from tests.engine.test_planning_driver import Driver, Fail, action, steps_workflow


def test_a_reference_to_a_skipped_steps_output_fails_the_execution() -> None:
    driver = Driver(
        {
            "id": "wf",
            "steps": [
                action("check", depends_on=[]),
                action("fetch", depends_on=[{"step": "check", "condition": "output.go"}]),
                # A join: check's edge is active, so report runs although fetch is skipped.
                action(
                    "report",
                    depends_on=["check", "fetch"],
                    parameters={"total": "${fetch.output.total}"},
                ),
            ],
        }
    )
    state = driver.run({"check": {"go": False}})
    assert state.steps["fetch"].status is StepStatus.SKIPPED
    assert state.status is ExecutionStatus.FAILED  # it could never resume: input cannot help
    assert state.error is not None
    assert state.error["type"] == "UnavailableOutputError"


def test_a_missing_key_in_an_upstream_output_fails_instead_of_pausing() -> None:
    driver = Driver(
        steps_workflow(
            action("fetch", depends_on=[]),
            action("report", parameters={"total": "${fetch.output.total}"}),
        )
    )
    state = driver.run({"fetch": {"count": 3}})
    assert state.status is ExecutionStatus.FAILED
    assert state.paused_on is None
    failures = driver.decisions(FailExecution)
    assert len(failures) == 1
    failure = failures[0]
    assert isinstance(failure, FailExecution)
    assert failure.step_id == "report"
    assert failure.error["type"] == "UnavailableOutputError"
    assert "fetch.output.total" in failure.error["message"]
    assert state.steps["report"].status is StepStatus.CANCELLED


def test_a_missing_input_still_pauses() -> None:
    driver = Driver(steps_workflow(action("greet", parameters={"name": "${input.name}"})))
    state = driver.run()
    assert state.status is ExecutionStatus.PAUSED
    assert state.paused_on == "input.name"
    assert driver.decisions(PauseExecution)


def test_a_failure_that_rolls_back_records_its_cause_on_the_execution() -> None:
    driver = Driver(
        steps_workflow(
            action("charge", depends_on=[], compensate={"action": "refund", "parameters": {}}),
            action("ship"),
        )
    )
    state = driver.run({"ship": Fail(message="no courier")})
    assert state.status is ExecutionStatus.ROLLED_BACK
    assert state.error == {"type": "ValueError", "message": "no courier", "retryable": False}


def test_a_missing_key_of_a_triggers_output_pauses_like_a_missing_input() -> None:
    driver = Driver(
        {
            "id": "g",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "m",
                    "config": {"action": "noop", "parameters": {"b": "${start.output.boss}"}},
                },
            ],
            "connections": [{"source": "start", "target": "m"}],
        },
        {"amount": 1},
    )
    state = driver.run()
    assert state.status is ExecutionStatus.PAUSED
    assert state.steps["start"].status is StepStatus.COMPLETED
    assert state.paused_on == "start.output.boss"
    driver.execution.provide_input({"boss": "bo"}, None, driver.now)
    driver.execution.resume(None, driver.now)
    done = driver.run()
    assert done.status is ExecutionStatus.COMPLETED
    # The trigger's output is the input as provided so far.
    assert done.steps["start"].output == {"amount": 1, "boss": "bo"}
