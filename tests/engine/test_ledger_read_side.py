"""The Ledger's audit and time-travel methods over executions a real engine recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowledger import (
    ChainError,
    ExecutionStatus,
    ImportConflictError,
    Ledger,
    StepStatus,
    VersionNotFoundError,
    WorkflowEngine,
)
from tests.unit.conftest import WAIT, step, workflow

ORDER = workflow(
    step("price", parameters={"amount": "${input.amount}"}),
    step("charge", parameters={"amount": "${price.output.amount}"}),
    workflow_id="order",
)


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """A store holding two completed orders (amounts 5 and 7); its URL and their ids."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    engine = WorkflowEngine(url)
    async with engine:
        ids = [
            (await engine.run_workflow(ORDER, {"amount": amount}, timeout=WAIT)).execution_id
            for amount in (5, 7)
        ]
    engine.close()
    yield url, ids


async def test_the_timeline_has_one_line_per_event(recorded: tuple[str, list[str]]) -> None:
    url, (first, _) = recorded
    with Ledger(url) as ledger:
        lines = ledger.timeline(first)
        history = ledger.history(first)

    assert [line.version for line in lines] == [entry.version for entry in history]
    assert [line.type for line in lines] == [entry.type for entry in history]
    assert all(line.text and "\n" not in line.text for line in lines)


async def test_a_diff_between_two_versions_names_what_changed(
    recorded: tuple[str, list[str]],
) -> None:
    url, (first, _) = recorded
    with Ledger(url) as ledger:
        before = ledger.get(first, version=1)
        whole = ledger.diff(first, 1)
        by_time = ledger.diff(first, before.updated_at, ledger.get(first).updated_at)

    assert whole.to_dict() == by_time.to_dict()
    assert not whole.is_empty
    changed = {step.step_id: {c.field for c in step.changes} for step in whole.step_changes}
    assert "status" in changed["charge"]
    assert any(change.field == "status" for change in whole.changes)


async def test_a_diff_to_a_version_that_does_not_exist_is_refused(
    recorded: tuple[str, list[str]],
) -> None:
    url, (first, _) = recorded
    with Ledger(url) as ledger, pytest.raises(VersionNotFoundError):
        ledger.diff(first, 1, 999)


async def test_two_executions_are_compared_step_by_step(recorded: tuple[str, list[str]]) -> None:
    url, (first, second) = recorded
    with Ledger(url) as ledger:
        comparison = ledger.compare(first, second)
        itself = ledger.compare(first, first)

    outputs = {
        step.step_id: change
        for step in comparison.step_changes
        for change in step.changes
        if change.field == "output"
    }
    assert outputs["charge"].before == {"amount": 5}
    assert outputs["charge"].after == {"amount": 7}
    assert not any(c.field == "output" for s in itself.step_changes for c in s.changes)


async def test_an_exported_execution_imports_into_another_store_and_replays(
    recorded: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, (first, _) = recorded
    with Ledger(url) as ledger:
        bundle = json.loads(json.dumps(ledger.export(first)))
        history = ledger.history(first)

    with Ledger(f"sqlite:///{tmp_path}/other.db") as other:
        assert other.import_bundle(bundle) == first
        assert other.import_bundle(bundle) == first  # again: nothing new is stored
        assert other.verify(first).ok
        assert other.history(first) == history
        assert other.get(first).status is ExecutionStatus.COMPLETED


async def test_an_import_that_conflicts_or_does_not_verify_stores_nothing(
    recorded: tuple[str, list[str]],
) -> None:
    url, (first, second) = recorded
    with Ledger(url) as ledger:
        other = ledger.export(second)
        other_history = ledger.history(second)
        forged = ledger.export(first)
        forged["execution_id"] = second
        for event in forged["events"]:
            event["data"]["execution_id"] = second
        tampered = ledger.export(first)
        tampered["events"][-1]["data"]["outputs"] = {"charge": {"amount": 0}}

        with pytest.raises(ChainError):
            ledger.import_bundle(tampered)
        with pytest.raises((ChainError, ImportConflictError)):
            ledger.import_bundle(forged)
        assert ledger.import_bundle(other) == second
        assert ledger.history(second) == other_history


async def test_what_if_serves_recorded_outcomes_without_running_actions(
    recorded: tuple[str, list[str]],
) -> None:
    url, (first, _) = recorded
    changed = workflow(
        step("price", parameters={"amount": "${input.amount}"}),
        step("charge", parameters={"amount": 99}),
        workflow_id="order",
    )
    with Ledger(url) as ledger:
        same = ledger.what_if(first, ORDER)
        report = ledger.what_if(first, changed, stubs={"charge": {"stubbed": True}})
        assert ledger.verify(first).ok

    assert same.first_divergence is None
    assert report.first_divergence == "charge"
    assert report.steps["price"].produced_by == "served"
    assert report.steps["charge"].produced_by == "stubbed"
    assert report.what_if_status is ExecutionStatus.COMPLETED
    assert report.steps["charge"].what_if_status == StepStatus.COMPLETED
