from __future__ import annotations

import itertools
from typing import Any

from flowledger.domain.history import history_entry
from flowledger.domain.state import HistoryEntry
from tests.domain.factories import T0, at, chain_definition, error, started

NASTY = {"_type_": "t", "_data_": [1]}


def entries() -> list[HistoryEntry]:
    execution = started("a", "b", compensate=("a",), input_data={"in": NASTY})
    execution.start_step("a", {"p": NASTY}, at(1))
    execution.complete_step("a", NASTY, 4, at(2))
    execution.record_condition("a", "b", "output.ok", False, at(3))
    execution.skip_step("b", "branch_not_taken", at(3))
    execution.provide_input({"more": 1}, "alice", at(4))
    execution.start_rollback("test", at(5))
    execution.start_compensation("a", at(6))
    execution.roll_back_step("a", {"undone": True}, at(7))
    execution.fail_rollback("a", error(), at(8))
    return [history_entry(event) for event in execution.collect_events()]  # type: ignore[arg-type]


def by_type(items: list[HistoryEntry]) -> dict[str, HistoryEntry]:
    return {entry.type: entry for entry in items}


def test_entries_carry_version_type_time_and_chain_links() -> None:
    items = entries()
    assert [entry.version for entry in items] == list(range(1, len(items) + 1))
    assert [entry.type for entry in items[:4]] == [
        "ExecutionStarted",
        "StepStarted",
        "StepCompleted",
        "ConditionEvaluated",
    ]
    assert items[0].timestamp == T0 and items[2].timestamp == at(2)
    assert items[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(items):
        assert after.prev_hash == before.hash and len(after.hash) == 64


def test_payloads_are_decoded_back_to_values() -> None:
    found = by_type(entries())
    started_data = found["ExecutionStarted"].data
    assert started_data["input"] == {"in": NASTY}
    assert started_data["definition"] == chain_definition("a", "b", compensate=("a",)).to_dict()
    assert found["StepStarted"].data["parameters"] == {"p": NASTY}
    assert found["StepCompleted"].data["output"] == NASTY
    assert found["InputProvided"].data == {"inputs": {"more": 1}, "actor": "alice"}
    assert found["StepRolledBack"].data["output"] == {"undone": True}


def test_data_holds_only_the_events_own_fields() -> None:
    found = by_type(entries())
    completed: dict[str, Any] = found["StepCompleted"].data
    assert completed == {"step_id": "a", "attempt": 1, "output": NASTY, "duration_ms": 4.0}
    started_keys = set(found["ExecutionStarted"].data)
    assert started_keys == {"execution_id", "workflow_id", "definition", "definition_hash", "input"}
    assert found["RollbackFailed"].data == {"step_id": "a", "error": error()}


def test_step_id_is_the_step_the_event_concerns() -> None:
    found = by_type(entries())
    assert found["ExecutionStarted"].step_id is None
    assert found["StepCompleted"].step_id == "a"
    assert found["StepSkipped"].step_id == "b"
    assert found["ConditionEvaluated"].step_id == "b"
    assert found["RollbackStarted"].step_id is None
    assert found["RollbackFailed"].step_id == "a"


def test_entries_name_their_execution_when_told() -> None:
    execution = started("a")
    event = execution.collect_events()[0]
    assert history_entry(event, "ex-1").execution_id == "ex-1"
    assert history_entry(event).execution_id == ""
