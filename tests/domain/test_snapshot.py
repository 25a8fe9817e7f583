"""Compact execution snapshots: no definition inside, step records packed and lazy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from hypothesis import given
from hypothesis import strategies as st

from flowledger.domain import snapshot as snapshots
from flowledger.domain.canonical import sha256_hex
from flowledger.domain.execution import Execution
from flowledger.domain.snapshot import (
    DefinitionNotCached,
    ExecutionSnapshot,
    cached_definition_text,
    remember_definition_text,
)
from flowledger.domain.step_packing import pack_steps, unpack_steps
from flowledger.domain.step_records import new_step_record
from tests.domain.factories import at, error, started
from tests.domain.test_execution_store import new_execution, scenario


def advanced() -> Execution:
    execution = new_execution()
    for _ in scenario(execution):
        pass
    execution.collect_events()  # as if saved: a snapshot holds no pending events
    return execution


def test_a_snapshot_holds_the_definition_hash_not_the_definition() -> None:
    execution = advanced()
    state = ExecutionSnapshot.take(execution).state
    assert "_definition" not in state
    assert state["_definition_hash"] == execution.definition_hash
    assert "_steps" not in state
    assert isinstance(state["_packed_steps"], str)


def test_a_snapshot_rebuilds_an_equal_execution() -> None:
    execution = advanced()
    rebuilt = ExecutionSnapshot.take(execution).mutate(None)
    assert rebuilt == execution
    assert rebuilt.state() == execution.state()
    assert rebuilt.definition_dict() == execution.definition_dict()


def test_step_records_stay_packed_until_one_is_read() -> None:
    rebuilt = ExecutionSnapshot.take(advanced()).mutate(None)
    assert "_packed_steps" in vars(rebuilt)
    assert "_steps" not in vars(rebuilt)
    again = ExecutionSnapshot.take(rebuilt)  # a snapshot of it keeps them packed
    assert again.state["_packed_steps"] == vars(rebuilt)["_packed_steps"]
    assert rebuilt.step_status("a").value == "ROLLED_BACK"
    assert "_packed_steps" not in vars(rebuilt)
    assert "_steps" in vars(rebuilt)


def test_other_missing_attributes_are_still_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute '_nothing'"):
        _ = advanced()._nothing  # type: ignore[attr-defined]


def test_a_snapshot_does_not_change_when_its_execution_moves_on() -> None:
    execution = started("a", "b")
    snapshot = ExecutionSnapshot.take(execution)
    execution.start_step("a", {"n": 1}, at(1))
    execution.complete_step("a", {"done": True}, 3, at(2))
    execution.provide_input({"more": 1}, "alice", at(3))
    rebuilt = snapshot.mutate(None)
    assert rebuilt.version == 1
    assert rebuilt.state().steps["a"].status.value == "PENDING"
    assert rebuilt.state().input == {}


def test_changed_records_are_packed_again_and_unchanged_ones_reused() -> None:
    execution = started("a", "b")
    first = ExecutionSnapshot.take(execution)
    execution.start_step("a", {}, at(1))
    execution.complete_step("a", {"x": 1}, 1, at(2))
    execution.collect_events()
    second = ExecutionSnapshot.take(execution)
    assert first.mutate(None).state().steps["a"].output is None
    assert second.mutate(None).state().steps["a"].output == {"x": 1}
    assert second.mutate(None) == execution


def test_loading_a_snapshot_needs_the_definition_in_this_process(empty_cache: None) -> None:
    execution = advanced()
    snapshot = ExecutionSnapshot.take(execution)
    snapshots._DEFINITIONS.clear()
    with pytest.raises(DefinitionNotCached) as raised:
        snapshot.mutate(None)
    assert raised.value.definition_hash == execution.definition_hash
    assert remember_definition_text(execution.definition_hash, execution._definition)
    assert snapshot.mutate(None) == execution


def test_a_definition_is_remembered_only_under_its_own_hash(empty_cache: None) -> None:
    text = '{"id":"wf"}'
    assert not remember_definition_text("0" * 64, text)
    assert cached_definition_text("0" * 64) is None
    assert remember_definition_text(sha256_hex(text), text)
    assert cached_definition_text(sha256_hex(text)) == text
    assert not remember_definition_text(sha256_hex(text), '{"id":"other"}')
    assert cached_definition_text(sha256_hex(text)) == text


def test_the_definition_cache_forgets_the_least_recently_used(empty_cache: None) -> None:
    texts = [json.dumps({"id": f"wf-{n}"}) for n in range(snapshots.MAX_CACHED_DEFINITIONS + 1)]
    for text in texts[:-1]:
        remember_definition_text(sha256_hex(text), text)
    assert cached_definition_text(sha256_hex(texts[0])) == texts[0]  # now the most recent
    remember_definition_text(sha256_hex(texts[-1]), texts[-1])
    assert cached_definition_text(sha256_hex(texts[0])) == texts[0]
    assert cached_definition_text(sha256_hex(texts[1])) is None
    assert len(snapshots._DEFINITIONS) == snapshots.MAX_CACHED_DEFINITIONS


def test_an_old_full_snapshot_still_rebuilds_the_execution() -> None:
    execution = advanced()
    old = Snapshot.take(execution)
    assert "_definition" in old.state
    assert old.mutate(None) == execution


_TIMES = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
_RECORDS = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["PENDING", "RUNNING", "COMPLETED", "FAILED"]),
        "attempts": st.integers(0, 10),
        "output": st.none() | st.text(),
        "error": st.none() | st.just(error()),
        "started_at": _TIMES,
        "finished_at": _TIMES,
        "duration_ms": st.none() | st.floats(0, 1e6),
        "not_before": _TIMES,
        "reason": st.none() | st.text(),
        "compensation_output": st.none() | st.text(),
        "interrupted": st.booleans(),
        "version": st.integers(0, 10_000),
    }
)


@given(st.dictionaries(st.text().map(lambda s: "step:" + s), _RECORDS, max_size=8))
def test_packed_step_records_unpack_to_equal_records(records: dict[str, Any]) -> None:
    unpacked = unpack_steps(pack_steps(records))
    assert unpacked == records
    assert list(unpacked) == list(records)


def test_packing_covers_every_field_of_a_step_record() -> None:
    record = new_step_record()
    assert unpack_steps(pack_steps({"step:a": record})) == {"step:a": record}
