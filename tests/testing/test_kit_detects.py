"""The kit detects broken properties, naming the property, the crash point and the difference."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowledger import ExecutionStatus, HistoryEntry, Ledger, load_definition
from flowledger.testing import (
    Fake,
    FakeCall,
    PropertyViolation,
    check_replay,
    check_workflow,
    check_workflow_async,
)
from flowledger.testing._differences import difference
from flowledger.testing._properties import check_no_repeats, check_rollback
from flowledger.testing._runs import EXECUTION_ID

TWO_STEPS = {
    "id": "pair",
    "steps": [
        {"id": "first", "action": "count"},
        {"id": "second", "action": "echo", "parameters": {"got": "${first.output}"}},
    ],
}


def test_an_action_that_answers_differently_when_called_again_breaks_crash_recovery() -> None:
    # Its output depends on how often it was called: a crash after the step started
    # makes the recovered run call it twice, and its output differs.
    counting = Fake(lambda call: {"calls": call.invocation})

    with pytest.raises(PropertyViolation) as raised:
        check_workflow(TWO_STEPS, {"count": counting})

    violation = raised.value
    assert violation.property_name == "crash recovery"
    assert violation.crash_point == 2  # right after StepStarted(first)
    assert "outputs.first.calls: expected 1, found 2" in str(violation)
    assert "crash after event 2" in str(violation)


def test_an_action_that_keeps_state_between_runs_breaks_resume() -> None:
    counter = itertools.count(1)
    definition = {
        "id": "needs-name",
        "steps": [{"id": "ask", "action": "ask", "parameters": {"name": "${input.name}"}}],
    }
    leaky = Fake(lambda call: {"ticket": next(counter)})

    with pytest.raises(PropertyViolation) as raised:
        check_workflow(definition, {"ask": leaky}, resume_inputs={"name": "Ada"})

    assert raised.value.property_name == "resume"
    assert raised.value.crash_point is None
    assert "outputs.ask.ticket" in raised.value.detail


def test_an_execution_that_never_rests_breaks_crash_recovery() -> None:
    async def hang(call: FakeCall) -> None:
        await asyncio.Event().wait()

    with pytest.raises(PropertyViolation) as raised:
        check_workflow(TWO_STEPS, {"count": Fake(hang)}, timeout=0.3)

    assert raised.value.property_name == "crash recovery"
    assert "RUNNING, not terminal or paused" in raised.value.detail
    assert "in time" in raised.value.detail


def test_a_tampered_store_breaks_replay(tmp_path: Path) -> None:
    report = check_workflow(
        TWO_STEPS, {"count": Fake.returns({"v": 1})}, crash_points=(), store_dir=tmp_path
    )
    (store,) = tmp_path.glob("check-*/reference.db")
    url = f"sqlite:///{store}"
    assert check_replay(url, EXECUTION_ID, report.state)  # untouched, it replays

    with sqlite3.connect(store) as connection:
        connection.execute(
            "UPDATE stored_events SET state = replace(state, ?, ?) WHERE originator_version = 3",
            (b'{\\"v\\":1}', b'{\\"v\\":2}'),
        )

    with pytest.raises(PropertyViolation) as raised:
        check_replay(url, EXECUTION_ID, report.state)
    assert raised.value.property_name == "replay"
    assert "does not verify" in raised.value.detail


def test_a_store_without_the_execution_breaks_replay(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'empty.db'}"

    with pytest.raises(PropertyViolation, match=r"cannot be read back: execution .* not found"):
        check_replay(store, EXECUTION_ID)


async def test_a_state_other_than_the_saved_one_breaks_replay(tmp_path: Path) -> None:
    report = await check_workflow_async(
        TWO_STEPS, {"count": Fake.returns(1)}, crash_points=(), store_dir=tmp_path
    )
    (store,) = tmp_path.glob("check-*/reference.db")
    url = f"sqlite:///{store}"
    earlier = check_replay(url, EXECUTION_ID)  # the history, read back

    with pytest.raises(PropertyViolation, match="differs from the engine's") as raised:
        check_replay(
            url, EXECUTION_ID, report.state.__class__(**{**vars(report.state), "version": 1})
        )
    assert "version: expected 1, found" in raised.value.detail
    assert len(earlier) == report.history_length


def entry(version: int, kind: str, step_id: str | None = None, **data: Any) -> HistoryEntry:
    return HistoryEntry(version, kind, datetime(2025, 1, 1, tzinfo=UTC), step_id, data)


def history(*events: tuple[str, str | None]) -> list[HistoryEntry]:
    return [entry(number, kind, step) for number, (kind, step) in enumerate(events, start=1)]


ROLLBACK_DEFINITION = load_definition(
    {
        "id": "undo",
        "steps": [
            {"id": "a", "action": "x", "compensate": {"action": "undo"}},
            {"id": "b", "action": "x", "compensate": {"action": "undo"}},
            {"id": "c", "action": "x"},
        ],
    }
)


@pytest.mark.parametrize(
    ("events", "status", "expected"),
    [
        pytest.param(
            [("CompensationStarted", "a"), ("StepRolledBack", "a")],
            ExecutionStatus.ROLLED_BACK,
            "compensations started for ['a']",
            id="compensates-first-completed-first",
        ),
        pytest.param(
            [("CompensationStarted", "b"), ("StepRolledBack", "b")],
            ExecutionStatus.ROLLED_BACK,
            "is ROLLED_BACK with ['b'], not ['b', 'a']",
            id="leaves-one-out",
        ),
        pytest.param(
            [("CompensationStarted", "b"), ("StepRolledBack", "a")],
            ExecutionStatus.ROLLBACK_FAILED,
            "steps rolled back ['a'], compensations started ['b']",
            id="rolls-back-what-did-not-start",
        ),
    ],
)
def test_compensation_out_of_order_or_missing_breaks_rollback(
    events: list[tuple[str, str]], status: ExecutionStatus, expected: str
) -> None:
    completed = history(
        ("ExecutionStarted", None),
        ("StepCompleted", "a"),
        ("StepCompleted", "b"),
        ("StepFailed", "c"),
        ("RollbackStarted", None),
        *events,
    )

    with pytest.raises(PropertyViolation) as raised:
        check_rollback(completed, ROLLBACK_DEFINITION, status, crash_point=4)

    assert raised.value.property_name == "rollback"
    assert expected in raised.value.detail
    assert raised.value.crash_point == 4


def test_compensating_without_a_rollback_or_a_step_that_did_not_complete_breaks_rollback() -> None:
    broken = history(("StepCompleted", "a"), ("CompensationStarted", "b"))

    with pytest.raises(PropertyViolation) as raised:
        check_rollback(broken, ROLLBACK_DEFINITION, ExecutionStatus.RUNNING)

    assert "compensated without a rollback" in raised.value.detail
    assert "the completed compensable steps, last completed first, are ['a']" in str(raised.value)


def test_a_completion_or_an_end_recorded_twice_breaks_crash_recovery() -> None:
    repeated = history(
        ("StepCompleted", "a"),
        ("StepCompleted", "a"),
        ("StepRolledBack", "a"),
        ("StepRolledBack", "a"),
        ("ExecutionFailed", None),
        ("ExecutionRolledBack", None),
    )

    with pytest.raises(PropertyViolation) as raised:
        check_no_repeats(repeated, [], store="sqlite:///kept.db")

    detail = raised.value.detail
    assert "step 'a' completed 2 times" in detail
    assert "step 'a' rolled back 2 times" in detail
    assert "terminal events ExecutionFailed (event 5), ExecutionRolledBack (event 6)" in detail
    assert "store: sqlite:///kept.db" in str(raised.value)


def test_the_last_event_must_be_the_terminal_one() -> None:
    with pytest.raises(PropertyViolation, match="of 2 events"):
        check_no_repeats(history(("ExecutionCompleted", None), ("StepStarted", "a")), [])


def test_a_missing_fake_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="no fake for action\\(s\\) count"):
        check_workflow(TWO_STEPS, {})


async def test_the_sync_entry_point_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="await check_workflow_async"):
        check_workflow(TWO_STEPS, {"count": Fake.returns(1)})


def test_events_other_than_the_stored_ones_break_replay(tmp_path: Path) -> None:
    for output in (1, 2):
        check_workflow(
            TWO_STEPS, {"count": Fake.returns(output)}, crash_points=(), store_dir=tmp_path
        )
    first, second = (f"sqlite:///{path}" for path in sorted(tmp_path.glob("check-*/reference.db")))
    with Ledger(second) as ledger:
        other = ledger.application.read_events(EXECUTION_ID)
    with Ledger(first) as ledger:
        own = ledger.application.read_events(EXECUTION_ID)

    with pytest.raises(PropertyViolation, match=f"{len(own)} events, 3 were saved"):
        check_replay(first, EXECUTION_ID, saved=own[:3])
    with pytest.raises(PropertyViolation, match="the state loaded at version 1 differs"):
        check_replay(first, EXECUTION_ID, saved=other)


async def test_an_action_called_after_its_completion_was_recorded_breaks_crash_recovery(
    tmp_path: Path,
) -> None:
    report = await check_workflow_async(
        TWO_STEPS, {"count": Fake.returns(1)}, crash_points=(), store_dir=tmp_path
    )
    (store,) = tmp_path.glob("check-*/reference.db")
    with Ledger(f"sqlite:///{store}") as ledger:
        events = ledger.application.read_events(EXECUTION_ID)
    late = [
        FakeCall("count", "first", 1, 2, {}),
        FakeCall("undo", "first", 1, 1, {}, compensation=True),  # never rolled back: fine
    ]

    with pytest.raises(PropertyViolation) as raised:
        check_no_repeats(list(report.history), [*events, *late], crash_point=3)

    assert raised.value.detail == (
        "action 'count' was called for step 'first' (call 2) after its completion was recorded"
    )


def test_differences_name_what_is_missing_and_what_is_unexpected() -> None:
    found = difference({"a": 1, "b": {"c": 2}}, {"b": {"c": 3}, "d": [4]})

    assert found == "a: missing, expected 1; b.c: expected 2, found 3; d: unexpected [4]"
    assert difference(1, 1) == "(no difference)"
    assert difference("x" * 500, "y").endswith("xx..., found 'y'")
