from __future__ import annotations

import itertools
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from flowledger.domain.chain import (
    GENESIS,
    ChainLink,
    event_hash,
    link_of,
    verify_chain,
)
from flowledger.domain.events import ExecutionEvent, StepCompleted
from flowledger.domain.execution import Execution
from tests.domain.factories import at, error, sqlite_app, started


def build() -> Execution:
    """A RUNNING execution with a varied history (payloads, errors, a datetime field)."""
    execution = started("a", "b", input_data={"n": 1, "_type_": "t", "_data_": "d"})
    execution.start_step("a", {"x": 1}, at(1))
    execution.fail_step("a", error(), True, 12.5, at(2))
    execution.schedule_retry("a", at(10), at(3))
    execution.start_step("a", {"x": 1}, at(10))
    execution.complete_step("a", {"_type_": "o", "_data_": [1, 2]}, 3, at(11))
    execution.record_condition("a", "b", "output.ok", True, at(12))
    execution.provide_input({"more": True}, "alice", at(13))
    return execution


def history() -> tuple[Execution, list[ExecutionEvent]]:
    execution = build()
    events: list[ExecutionEvent] = list(execution.collect_events())  # type: ignore[arg-type]
    return execution, events


def links() -> list[ChainLink]:
    return [link_of(event) for event in history()[1]]


def tampered(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, dict):
        return {**value, "extra": 1}
    return "x"


def test_a_real_history_verifies() -> None:
    execution, events = history()
    report = verify_chain(link_of(event) for event in events)
    assert report.ok
    assert report.checked == len(events) == execution.version
    assert report.broken_at is None and report.reason is None
    assert report.head == execution.chain_head == events[-1].hash
    assert verify_chain((link_of(e) for e in events), expected_head=execution.chain_head).ok


def test_the_chain_starts_at_genesis_and_links_each_event_to_the_one_before() -> None:
    _, events = history()
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash


def test_stored_and_reloaded_events_still_verify(tmp_path: Any) -> None:
    execution = build()
    app = sqlite_app(tmp_path)
    app.save(execution)
    stored = list(app.events.get(execution.id))
    assert len(stored) == execution.version
    assert verify_chain((link_of(event) for event in stored), execution.chain_head).ok


@pytest.mark.parametrize("part", ["version", "type_name", "originator_id", "timestamp", "hash"])
def test_changing_any_part_of_any_link_is_detected_at_that_version(part: str) -> None:
    original = links()
    for index, link in enumerate(original):
        copy = list(original)
        copy[index] = replace(link, **{part: tampered(getattr(link, part))})
        report = verify_chain(copy)
        assert not report.ok
        assert report.broken_at == link.version, (part, index, report)


def test_changing_any_data_field_of_any_link_is_detected_at_that_version() -> None:
    original = links()
    changed = 0
    for index, link in enumerate(original):
        for name, value in link.data.items():
            copy = list(original)
            copy[index] = replace(link, data={**link.data, name: tampered(value)})
            report = verify_chain(copy)
            assert (report.ok, report.broken_at) == (False, link.version), (name, report)
            changed += 1
    assert changed > 3 * len(original)


def test_changing_a_stored_prev_hash_is_detected() -> None:
    original = links()
    copy = list(original)
    copy[3] = replace(original[3], prev_hash=tampered(original[3].prev_hash))
    report = verify_chain(copy)
    assert (report.broken_at, report.checked) == (4, 4)
    assert "prev_hash" in (report.reason or "")
    assert report.head == original[2].hash


def test_changing_a_field_of_an_event_object_is_detected() -> None:
    _, events = history()
    index = next(i for i, event in enumerate(events) if isinstance(event, StepCompleted))
    forged = replace(events[index], output='{"amount":1000000}')
    copy = [link_of(event) for event in events]
    copy[index] = link_of(forged)
    assert verify_chain(copy).broken_at == index + 1


def test_recomputing_the_forged_hash_still_breaks_the_next_link() -> None:
    original = links()
    forged = replace(original[2], data={**original[2].data, "retryable": False})
    forged = replace(forged, hash=forged.recompute())
    report = verify_chain([*original[:2], forged, *original[3:]])
    assert report.broken_at == 4


def test_reordering_is_detected() -> None:
    original = links()
    swapped = [*original[:2], original[3], original[2], *original[4:]]
    report = verify_chain(swapped)
    assert (report.ok, report.broken_at) == (False, 3)
    assert report.reason == "expected version 3, found 4"


def test_deleting_an_event_is_detected() -> None:
    original = links()
    assert verify_chain(original[1:]).broken_at == 1
    assert verify_chain([*original[:4], *original[5:]]).broken_at == 5


def test_inserting_an_event_is_detected() -> None:
    original = links()
    assert verify_chain([*original[:3], original[2], *original[3:]]).broken_at == 4
    renumbered = [*original[:3], replace(original[5], version=4)]
    assert verify_chain(renumbered).broken_at == 4


def test_deleting_the_last_events_is_detected_by_the_expected_head() -> None:
    original = links()
    head = original[-1].hash
    assert verify_chain(original[:-2]).ok
    report = verify_chain(original[:-2], expected_head=head)
    assert not report.ok
    assert report.broken_at == len(original) - 2
    assert head in (report.reason or "")


def test_an_empty_history_verifies_only_without_an_expected_head() -> None:
    assert verify_chain([]) == verify_chain([], None)
    assert verify_chain([]).ok and verify_chain([]).head == GENESIS
    report = verify_chain([], expected_head="f" * 64)
    assert (report.ok, report.broken_at, report.checked) == (False, 0, 0)


def test_event_hash_covers_every_argument() -> None:
    args: dict[str, Any] = {
        "prev_hash": GENESIS,
        "type_name": "StepSkipped",
        "originator_id": "id",
        "version": 2,
        "timestamp": at(0),
        "data": {"step_id": "a", "not_before": at(5), "nested": [{"x": 1}]},
    }
    digest = event_hash(**args)
    assert len(digest) == 64 and digest == event_hash(**args)
    for name, value in args.items():
        changed = {**args, name: tampered(value)}
        assert event_hash(**changed) != digest, name


def test_a_chain_link_has_every_field_an_auditor_needs() -> None:
    names = {field.name for field in fields(ChainLink)}
    assert names == {
        "version",
        "type_name",
        "originator_id",
        "timestamp",
        "data",
        "hash",
        "prev_hash",
    }
    first = links()[0]
    assert first.type_name == "ExecutionStarted"
    assert first.data["originator_topic"] == "flowledger.domain.execution:Execution"
    assert "hash" not in first.data and "prev_hash" in first.data
