"""How executions end, over random workflows run by the real engine.

Rollback order, resume after a missing input, and dead-path elimination at joins. The
store is ``memory://``: these properties concern the engine's decisions, read from the
history the engine recorded (through ``engine.ledger``), not the store; replay from a
SQLite file is checked in ``test_engine_properties``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import assume, given

from flowledger import ExecutionState, ExecutionStatus, HistoryEntry, StepStatus
from tests.property.engine_runs import EngineRun, running
from tests.property.workflows import (
    NEED,
    TRIGGER,
    Command,
    WorkflowRun,
    command_schedules,
    expected_outcome,
    workflow_runs,
)

AT_REST = {
    StepStatus.COMPLETED,
    StepStatus.SKIPPED,
    StepStatus.CANCELLED,
    StepStatus.FAILED,
    StepStatus.ROLLED_BACK,
    StepStatus.COMPENSATION_FAILED,
}


def _steps(history: list[HistoryEntry], kind: str) -> list[str]:
    return [entry.step_id or "" for entry in history if entry.type == kind]


async def _finish(
    run: WorkflowRun, commands: tuple[Command, ...] = ()
) -> tuple[ExecutionState, list[HistoryEntry], EngineRun]:
    async with running(run, "memory://", commands) as result:
        return await result.state(), await result.history(), result


@given(workflow_runs(), command_schedules())
def test_rollback_compensates_completed_steps_once_in_reverse_completion_order(
    run: WorkflowRun, commands: tuple[Command, ...]
) -> None:
    """Invariant 3: "rollback compensates each completed compensable step exactly once,
    in reverse completion order, and never a step that did not complete".

    Read from the history: the ``CompensationStarted`` order is the ``StepCompleted``
    order reversed, restricted to steps that declare ``compensate`` (all of them when
    ROLLED_BACK, a prefix ending in the failed compensation when ROLLBACK_FAILED, none
    otherwise); each compensation's action ran once, with the step's own output.
    """
    state, history, result = asyncio.run(_finish(run, commands))
    compensable = {step.id for step in run.shape.steps if step.compensate}
    completed = _steps(history, "StepCompleted")
    expected = [step_id for step_id in reversed(completed) if step_id in compensable]
    started = _steps(history, "CompensationStarted")
    rolled_back = _steps(history, "StepRolledBack")
    if state.status is ExecutionStatus.ROLLED_BACK:
        assert started == expected
        assert rolled_back == started
    elif state.status is ExecutionStatus.ROLLBACK_FAILED:
        assert started
        assert started == expected[: len(started)]
        assert rolled_back == started[:-1]
        assert _steps(history, "CompensationFailed") == started[-1:]
    else:
        assert started == []
    assert result.calls.compensated() == started
    for call in result.calls.calls:
        if call.compensation:
            output = state.steps[call.step_id].output
            assert call.parameters == {"of": output["v"], "whole": output}


async def _paused_then_resumed(run: WorkflowRun) -> tuple[ExecutionState, int]:
    async with running(run, "memory://") as result:
        return await result.state(), result.resumes


def _comparable(state: ExecutionState) -> dict[str, Any]:
    return {
        "status": state.status,
        "outputs": state.outputs,
        "steps": {s: (step.status, step.attempts) for s, step in state.steps.items()},
    }


@given(workflow_runs(triggers=False, input_missing=True, failures=False))
def test_resuming_with_the_missing_input_gives_the_outputs_of_a_run_that_had_it(
    run: WorkflowRun,
) -> None:
    """Invariant 4: "pause then resume with the missing input ⇒ the same outputs as a
    run that had the input from the start".

    A run whose input lacks ``need`` pauses when a step reads ``${input.need}``, and
    is resumed with it; it ends like a run given ``need`` at once: same status,
    outputs, step statuses and attempts (and input, once resumed). Runs whose outcome
    depends on timing (a step failing the execution while others run) are not
    generated here. Trigger nodes are left out: a trigger's output is the input as it
    was when the trigger ran, before anything was provided.
    """
    assume(run.needs_input)
    resumed, resumes = asyncio.run(_paused_then_resumed(run))
    given_run = WorkflowRun(
        run.definition, run.behaviours, {**run.input, "need": NEED}, run.shape, run.concurrency
    )
    direct, _ = asyncio.run(_paused_then_resumed(given_run))
    assert _comparable(resumed) == _comparable(direct)
    assert resumed.status is ExecutionStatus.COMPLETED
    reading = [step.id for step in run.shape.steps if "need" in step.parameters]
    ran = [s for s in reading if resumed.steps[s].status is not StepStatus.SKIPPED]
    assert (resumes > 0) == bool(ran)
    if resumes:
        assert resumed.input == direct.input


@given(workflow_runs(), command_schedules())
def test_a_finished_execution_leaves_no_step_pending_or_running(
    run: WorkflowRun, commands: tuple[Command, ...]
) -> None:
    """Dead-path elimination: a terminal execution has every step at rest.

    No step is left PENDING, RUNNING, PAUSED or COMPENSATING; a COMPLETED execution has
    every step COMPLETED or SKIPPED, or FAILED with ``continue_on_error``, and its
    outputs are those of its completed steps; no step completes twice, and each step's
    action ran once per attempt recorded.
    """
    state, history, result = asyncio.run(_finish(run, commands))
    assert state.status.is_terminal
    assert {step.status for step in state.steps.values()} <= AT_REST, state.steps
    if state.status is ExecutionStatus.COMPLETED:
        for step in run.shape.steps:
            status = state.steps[step.id].status
            assert status in {StepStatus.COMPLETED, StepStatus.SKIPPED} or (
                status is StepStatus.FAILED and step.continue_on_error
            )
        completed = {
            s: st.output for s, st in state.steps.items() if st.status is StepStatus.COMPLETED
        }
        assert state.outputs == completed
    completions = _steps(history, "StepCompleted")
    assert len(completions) == len(set(completions))
    for step in run.shape.steps:
        assert result.calls.attempts(step.id) == _steps(history, "StepStarted").count(step.id)


@given(workflow_runs(failures=False))
def test_exactly_the_branches_taken_run_and_joins_complete(run: WorkflowRun) -> None:
    """Dead-path elimination and joins: "an if/else that merges completes COMPLETED".

    When no step fails the execution, it ends COMPLETED whatever the timing, and each
    step's status, attempts and scripted output are those a model of the definition
    predicts: a step runs when one incoming edge is active and its guard holds (else it
    is SKIPPED, and its own edges are inactive); it completes at its first succeeding
    attempt, or fails after its retries with ``continue_on_error``. Each completed
    step's output holds the parameters its last attempt was started with.
    """
    expected = expected_outcome(run)
    assert expected is not None
    state, history, _ = asyncio.run(_finish(run))
    assert state.status is ExecutionStatus.COMPLETED
    steps = {s: step for s, step in state.steps.items() if s != TRIGGER}
    assert {s: step.status.value for s, step in steps.items()} == expected.statuses
    assert {s: step.attempts for s, step in steps.items()} == expected.attempts
    outputs = {s: (out["v"], out["data"]) for s, out in state.outputs.items() if s != TRIGGER}
    assert outputs == expected.outputs
    started = {
        entry.step_id: entry.data["parameters"] for entry in history if entry.type == "StepStarted"
    }
    for step_id, output in state.outputs.items():
        if step_id != TRIGGER:
            assert output["got"] == started[step_id]
