"""Invariant 2, on generated workflows: a crash at any event boundary changes nothing.

"Crash at any event boundary + recover ⇒ the same final status and outputs as an
uninterrupted run; no recorded completion is repeated; every execution ends terminal."
(DESIGN.md)

Each example runs a generated workflow once uninterrupted, then again on a store that
keeps the first k events and fails every later save, for drawn crash points k, and
recovers with a new engine on the same SQLite file — through ``flowledger.testing``,
the kit users get. One step runs at a time, so the uninterrupted run is the one outcome
to compare with even when a step fails the execution. One property draws a few crash
points on workflows of up to 7 steps; the other crashes smaller workflows after every
event of their history, so no boundary is left to chance.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowledger import NonRetryableError
from flowledger.testing import Fake, FakeCall, check_workflow
from tests.property.workflows import (
    Behaviours,
    Declined,
    Kind,
    TransientFailure,
    WorkflowRun,
    workflow_runs,
)

CRASH_POINTS = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=3)
"""Events after which a run is cut (points past the end of a history are skipped)."""


def fakes_for(behaviours: Behaviours) -> dict[str, Fake]:
    """The kit's fakes for the generated actions: answers by step and recorded attempt."""

    async def work(call: FakeCall) -> dict[str, Any]:
        kind = behaviours.outcome(call.step_id, call.attempt).kind
        reason = f"{call.step_id} attempt {call.attempt}"
        if kind is Kind.TRANSIENT:
            raise TransientFailure(reason)
        if kind is Kind.PERMANENT:
            raise NonRetryableError(reason)
        if kind is Kind.DECLINED:
            raise Declined(reason)
        if kind is Kind.TIME_OUT:
            raise TimeoutError(reason)  # fakes answer at once: the attempt fails instead
        return behaviours.output(call.step_id, call.attempt, call.parameters)

    def undo(call: FakeCall) -> dict[str, str]:
        if not behaviours.compensations[call.step_id]:
            raise TransientFailure(f"compensating {call.step_id}")
        return {"undone": call.step_id}

    return {"work": Fake(work, "work"), "undo": Fake(undo, "undo")}


# With the whole input from the start: a run that pauses lets parallel branches go on
# while it waits, so with failures its outcome may rightly differ from one that never
# paused (resuming is checked, without that case, in test_engine_outcomes).
@given(run=workflow_runs(input_missing=False), crash_points=CRASH_POINTS)
def test_a_crash_at_any_event_then_recovery_ends_as_the_uninterrupted_run(
    run: WorkflowRun, crash_points: list[int]
) -> None:
    definition, behaviours, input_data = run
    report = check_workflow(
        definition,
        fakes_for(behaviours),
        input_data,
        crash_points=sorted(set(crash_points)),
        max_concurrent_steps=1,
    )

    assert report.history_length >= 1
    assert len(report.crash_points) + len(report.skipped_crash_points) == len(set(crash_points))


@contextmanager
def _memory_backed_dir() -> Iterator[str | None]:
    """A directory in RAM (``/dev/shm``) for a check's stores, or None (the default).

    The crash is injected by the store wrapper, not by losing power, so fsync
    durability plays no part in the property; on this machine it halves the runtime
    of a check that runs one engine pair per event. Removed afterwards.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="flowledger-every-event-", dir=shm) as directory:
        yield directory


# Every event boundary, not drawn ones: each example crashes the run after each event of
# its uninterrupted history in turn (a run per event). Workflows of 2 or 3 steps keep
# histories short enough for this file's CI time budget; the drawn points above cover
# larger workflows.
@given(run=workflow_runs(input_missing=False, max_steps=3))
def test_a_crash_at_every_event_then_recovery_ends_as_the_uninterrupted_run(
    run: WorkflowRun,
) -> None:
    definition, behaviours, input_data = run
    with _memory_backed_dir() as store_dir:
        report = check_workflow(
            definition,
            fakes_for(behaviours),
            input_data,
            crash_points="all",
            store_dir=store_dir,
            max_concurrent_steps=1,
        )

    every_event = list(range(1, report.history_length + 1))
    assert [point.crash_after for point in report.crash_points] == every_event
    assert not report.skipped_crash_points
