"""Crash injection: every event of a history is a crash point, and each is recovered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowledger import ExecutionStatus, Ledger, WorkflowEngine
from flowledger.testing import (
    CrashingApplication,
    Fake,
    InjectedCrash,
    RunTrace,
    check_workflow,
)

THREE_STEPS = {
    "id": "three",
    "steps": [
        {"id": "a", "action": "step"},
        {"id": "b", "action": "step"},
        {"id": "c", "action": "step"},
    ],
}
"""Started, then Started and Completed per step, then Completed: eight events."""


def test_every_crash_point_of_a_small_workflow_is_run_and_recovered() -> None:
    report = check_workflow(THREE_STEPS, {"step": Fake.echoes()})

    assert report.history_length == 8
    assert [point.crash_after for point in report.crash_points] == [1, 2, 3, 4, 5, 6, 7, 8]
    # The last point needs no more events: only the seven before it crash.
    assert [point.crashed for point in report.crash_points] == [True] * 7 + [False]
    by_point = {point.crash_after: point for point in report.crash_points}
    # Crashing after StepStarted(a) loses its outcome: the action runs again, and the
    # recovered history records the interruption and the restart.
    assert [call.step_id for call in by_point[2].calls] == ["a", "a", "b", "c"]
    assert [(call.attempt, call.invocation) for call in by_point[2].calls[:2]] == [(1, 1), (1, 2)]
    assert by_point[2].events == 10
    # After StepCompleted(a) is stored, a is never called again.
    assert [call.step_id for call in by_point[3].calls] == ["a", "b", "c"]
    assert by_point[3].events == 8


def test_chosen_crash_points_beyond_the_history_are_skipped() -> None:
    report = check_workflow(THREE_STEPS, {"step": Fake.echoes()}, crash_points=[4, 99, 0, 4])

    assert [point.crash_after for point in report.crash_points] == [4]
    assert report.skipped_crash_points == (0, 99)


async def test_a_crashing_store_keeps_exactly_the_prefix_then_refuses_every_save(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    trace = RunTrace(asyncio.get_running_loop())
    application = CrashingApplication(url, trace=trace, crash_after=3)
    engine = WorkflowEngine(application=application)
    engine.action("step")(lambda: {"done": True})
    try:
        execution_id = await engine.start_workflow(THREE_STEPS)
        await asyncio.wait_for(trace.crashed.wait(), 5)
        with pytest.raises(InjectedCrash) as raised:
            application.save_events(trace.stored[-1:])
        assert raised.value.crash_after == 3
        assert "crash injected after event 3" in str(raised.value)
    finally:
        await engine.stop()
        engine.close()

    assert [type(event).__name__ for event in trace.stored] == [
        "ExecutionStarted",
        "StepStarted",
        "StepCompleted",
    ]
    with Ledger(url) as ledger:
        state = ledger.get(execution_id)
    assert state.version == 3
    assert state.status is ExecutionStatus.RUNNING
