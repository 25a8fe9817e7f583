"""Lifecycle properties under random operators' commands, run by the real engine.

Cancel, pause and resume commands are issued while a generated workflow runs (in
bursts that race each other, once a drawn number of events is saved, from an engine
listener; or once it rests, if that moment never comes), and again after it ends.
The store is ``memory://``: the property concerns which commands the engine accepts
and what it records, not the store, and ``engine.ledger`` reads the same history
(replay from a SQLite file is checked in ``test_engine_properties``).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given

from flowledger import (
    ExecutionState,
    ExecutionStatus,
    HistoryEntry,
    InvalidTransitionError,
    WorkflowEngine,
)
from flowledger.domain.event_catalogue import TERMINAL_EVENTS
from flowledger.domain.lifecycles import EXECUTION_LIFECYCLE, STEP_LIFECYCLE
from tests.property.engine_runs import EXECUTION_ID, OPERATOR, WAIT, EngineRun, running
from tests.property.workflows import (
    NEED,
    Command,
    WorkflowRun,
    command_schedules,
    workflow_runs,
)


def _count(history: list[HistoryEntry], kind: str, actor: str | None = None) -> int:
    return sum(
        1
        for entry in history
        if entry.type == kind and (actor is None or entry.data.get("actor") == actor)
    )


def _accepted(result: EngineRun, kind: str) -> int:
    return sum(1 for command in result.accepted if command.kind == kind)


async def _refused_and_unrecorded(result: EngineRun, command: Command) -> None:
    """Issue a command the lifecycle forbids now: it is refused and changes nothing."""
    state, history = await result.state(), await result.history()
    with pytest.raises(InvalidTransitionError):
        if command.kind == "cancel":
            await result.engine.cancel_workflow(EXECUTION_ID, rollback=command.rollback)
        elif command.kind == "pause":
            await result.engine.pause_workflow(EXECUTION_ID)
        else:
            await result.engine.resume_workflow(EXECUTION_ID, {"need": NEED})
    assert await result.state() == state
    assert await result.history() == history


def _every_change_is_a_transition(result: EngineRun, versions: int) -> None:
    """Between consecutive versions, every status that changed took an allowed transition."""
    executions = {(state, dest) for (state, _), dest in EXECUTION_LIFECYCLE.table.items()}
    steps = {(state, dest) for (state, _), dest in STEP_LIFECYCLE.table.items()}
    ledger = result.engine.ledger
    before = ledger.get(EXECUTION_ID, version=1)
    for version in range(2, versions + 1):
        after = ledger.get(EXECUTION_ID, version=version)
        if after.status != before.status:
            assert (before.status, after.status) in executions, (version, after.status)
        for step_id, step in after.steps.items():
            was = before.steps[step_id].status
            if step.status != was:
                assert (was, step.status) in steps, (version, step_id, was, step.status)
        before = after


async def _lifecycle(run: WorkflowRun, commands: tuple[Command, ...]) -> None:
    async with running(run, "memory://", commands, provide_missing=False) as result:
        state = await result.state()
        while state.status is ExecutionStatus.PAUSED:
            # At rest and paused: pausing again is illegal; a resume carries on.
            await _refused_and_unrecorded(result, Command("pause", 0))
            state = await result.drive(provide_missing=True)
        assert all(s.is_terminal or s is ExecutionStatus.PAUSED for s in result.rests)
        assert state.status.is_terminal
        history = await result.history()
        # Each accepted command recorded its event once; each refused one, nothing.
        assert _count(history, "CancelRequested") == _accepted(result, "cancel")
        assert _count(history, "ExecutionPaused", OPERATOR) == _accepted(result, "pause")
        resumes = _accepted(result, "resume") + result.resumes
        assert _count(history, "ExecutionResumed") == resumes
        # The terminal event is recorded once, last, and the status never changes after.
        ends = [entry.version for entry in history if entry.type in TERMINAL_EVENTS]
        assert ends == [history[-1].version], [entry.type for entry in history]
        await asyncio.to_thread(_every_change_is_a_transition, result, state.version)
        for command in (
            Command("cancel", 0),
            Command("cancel", 0, rollback=True),
            Command("pause", 0),
            Command("resume", 0),
        ):
            await _refused_and_unrecorded(result, command)
        assert await result.settle() == state


@given(workflow_runs(), command_schedules())
def test_commands_never_break_the_lifecycle(
    run: WorkflowRun, commands: tuple[Command, ...]
) -> None:
    """Invariant 5: "illegal transitions never change state; terminal states never change".

    Under random cancel, pause and resume commands: every command the engine accepts
    records its event exactly once and every refused one (``InvalidTransitionError``)
    records nothing; whenever the execution comes to rest it is terminal or PAUSED;
    pausing an execution PAUSED at rest is refused and changes nothing; once resumed
    as often as needed it ends terminal, its terminal event is its last, and every
    later cancel, pause or resume is refused and changes neither status nor history.
    Replayed version by version, every change of the execution's or a step's status
    is a transition its lifecycle allows.
    """
    asyncio.run(_lifecycle(run, commands))


async def _resume_and_cancel_together() -> tuple[list[object], str, list[str]]:
    definition = {
        "id": "paused",
        "steps": [
            {"id": "a", "action": "noop"},
            {"id": "b", "action": "echo", "parameters": {"x": "${input.x}"}},
            {"id": "c", "action": "noop"},
        ],
    }
    engine = WorkflowEngine("memory://")
    try:
        async with engine:
            paused = await engine.run_workflow(definition, {}, execution_id="e")
            assert paused.status is ExecutionStatus.PAUSED
            results = await asyncio.gather(
                engine.resume_workflow("e", {"x": 1}),
                engine.cancel_workflow("e"),
                return_exceptions=True,
            )
            state = await engine.wait_for("e", timeout=WAIT)
            history = await asyncio.to_thread(engine.ledger.history, "e")
    finally:
        engine.close()
    return list(results), state.status.value, [entry.type for entry in history]


def test_a_resume_and_a_cancel_racing_on_a_paused_execution_are_both_applied() -> None:
    """Found by the lifecycle property: two commands reaching a paused execution at rest
    at once. The second waited for the first to spawn a runner, then saved beside it:
    one of them failed with a conflict, or the runner stopped and left the execution
    RUNNING with nothing to drive it. Now the second is handed to the runner.
    """
    results, status, types = asyncio.run(_resume_and_cancel_together())
    assert all(isinstance(result, ExecutionState) for result in results), results
    assert status == "CANCELLED"
    assert types.count("ExecutionResumed") == types.count("CancelRequested") == 1
