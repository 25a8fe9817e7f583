"""LedgerApplication on real stores: loading, snapshots, transactions, conflicts, scans."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from flowledger.domain import snapshot as snapshot_module
from flowledger.domain.execution import Execution
from flowledger.engine import ledger_log
from flowledger.engine.ledger_app import (
    ConcurrencyConflictError,
    LedgerApplication,
    replay,
)
from flowledger.errors import CorruptRecordError, ExecutionNotFoundError
from tests.domain.factories import at, chain_definition
from tests.engine.test_ledger import run
from tests.engine.test_ledger_audit import edit_json, tamper


@pytest.fixture(params=["sqlite", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else "memory://"


def long_execution(execution_id: str, events: int) -> Execution:
    """An execution of ``events`` events: a start, then steps started and completed."""
    steps = tuple(f"s{index}" for index in range((events - 1) // 2))
    execution = Execution.start(execution_id, chain_definition(*steps), None, at(0))
    clock = 0
    for step_id in steps:
        execution.start_step(step_id, {"i": clock}, at(clock := clock + 1))
        execution.complete_step(step_id, {"i": clock}, 1, at(clock := clock + 1))
    if execution.version < events:
        execution.complete({}, at(clock + 1))
    assert execution.version == events
    return execution


def test_snapshots_load_equal_to_a_full_replay(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    writer = LedgerApplication(url, snapshot_interval=10)
    execution = long_execution("long", 100)
    writer.save(execution)
    assert writer.snapshots is not None
    snapshots = list(writer.snapshots.get(execution.id))
    assert [s.originator_version for s in snapshots] == list(range(10, 101, 10))

    reader = LedgerApplication(url, snapshot_interval=10)
    plain = LedgerApplication(url, snapshot_interval=0)
    assert plain.snapshots is None
    assert reader.load("long") == plain.load("long") == execution
    assert reader.load("long").state() == plain.load("long").state() == execution.state()
    for version in (1, 9, 10, 11, 55, 99, 100):
        assert reader.load("long", version) == plain.load("long", version)


def test_put_snapshot_records_a_saved_execution_as_it_is(url: str) -> None:
    app = LedgerApplication(url, snapshot_interval=10)
    execution = long_execution("long", 25)
    app.save(*execution.collect_events())  # bare events: eventsourcing takes no snapshot
    assert app.snapshots is not None
    assert list(app.snapshots.get(execution.id)) == []
    app.put_snapshot(execution)
    assert [s.originator_version for s in app.snapshots.get(execution.id)] == [25]
    assert app.load("long") == execution


def test_saving_aggregates_takes_snapshots_at_the_interval(url: str) -> None:
    app = LedgerApplication(url, snapshot_interval=10)
    execution = long_execution("long", 25)
    app.save(execution)
    assert app.snapshots is not None
    assert [s.originator_version for s in app.snapshots.get(execution.id)] == [10, 20]
    assert app.load("long") == execution
    assert app.snapshotting_intervals == {Execution: 10}
    assert app.is_snapshotting_enabled


@pytest.mark.parametrize("interval", [0, None])
def test_snapshots_can_be_turned_off(interval: int | None) -> None:
    app = LedgerApplication("memory://", snapshot_interval=interval)
    assert app.snapshots is None
    assert not app.is_snapshotting_enabled
    assert app.snapshotting_intervals == {}
    execution = long_execution("long", 25)
    app.save(execution)
    app.put_snapshot(execution)  # nothing to do
    assert app.load("long") == execution


def test_a_negative_snapshot_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="snapshot_interval"):
        LedgerApplication("memory://", snapshot_interval=-1)


def test_put_snapshot_refuses_unsaved_events() -> None:
    app = LedgerApplication("memory://")
    execution = run("ex-1")
    with pytest.raises(ValueError, match="unsaved events"):
        app.put_snapshot(execution)


def set_attribute_projector(aggregate: Execution | None, events: Iterable[Any]) -> Execution | None:
    """Replays, then adds a value the store's JSON transcoder cannot encode."""
    rebuilt = replay(aggregate, events)
    if rebuilt is not None:
        rebuilt.__dict__["_not_json"] = {1, 2}
    return rebuilt


class UnsnapshottableLedger(LedgerApplication):
    snapshotting_projectors = {Execution: set_attribute_projector}  # noqa: RUF012


def test_a_failing_snapshot_does_not_fail_the_save(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = UnsnapshottableLedger(url, snapshot_interval=2)
    execution = run("ex-1")
    with caplog.at_level(logging.WARNING, logger="flowledger.engine.ledger_app"):
        recordings = app.save(execution)
    assert len(recordings) == 6
    assert "snapshot failed" in caplog.text
    assert app.snapshots is not None
    assert list(app.snapshots.get(execution.id)) == []
    assert app.load("ex-1") == execution


def test_unknown_execution_is_not_found(url: str) -> None:
    app = LedgerApplication(url)
    with pytest.raises(ExecutionNotFoundError) as raised:
        app.load("missing")
    assert raised.value.execution_id == "missing"
    assert raised.value.__cause__ is not None
    with pytest.raises(ExecutionNotFoundError):
        app.read_events("missing")
    with pytest.raises(ExecutionNotFoundError):
        app.rebuild("missing", [])


def test_several_executions_are_saved_in_one_transaction(url: str) -> None:
    app = LedgerApplication(url)
    one, two = run("one"), run("two", end="fail")
    recordings = app.save(one, two)
    assert len(recordings) == 12
    ids = {recording.notification.id for recording in recordings}
    assert len(ids) == 12
    assert app.load("one") == one
    assert app.load("two") == two


def test_a_conflicting_save_raises_and_records_nothing(url: str) -> None:
    app = LedgerApplication(url)
    app.save(run("ex-1", end="running"))
    first, second = app.load("ex-1"), app.load("ex-1")
    first.complete({"by": "first"}, at(100))
    second.complete({"by": "second"}, at(101))
    app.save(first)
    bystander = run("bystander")
    with pytest.raises(ConcurrencyConflictError) as raised:
        app.save(bystander, second)
    assert raised.value.execution_ids == ("bystander", "ex-1")
    assert "nothing of this save was recorded" in str(raised.value)
    assert app.load("ex-1").state().outputs == first.state().outputs
    assert app.load("ex-1").version == first.version
    with pytest.raises(ExecutionNotFoundError):
        app.load("bystander")


def test_two_copies_of_one_execution_in_one_save_record_nothing(url: str) -> None:
    app = LedgerApplication(url)
    app.save(run("ex-1", end="running"))
    first, second = app.load("ex-1"), app.load("ex-1")
    first.complete({}, at(100))
    second.fail(None, {"type": "E", "message": "m", "retryable": False}, at(100))
    bystander = run("bystander")
    with pytest.raises(ConcurrencyConflictError):
        app.save(bystander, first, second)
    assert app.load("ex-1").version == 5
    assert list(app.execution_ids()) == ["ex-1"]


def test_a_conflict_of_bare_events_names_their_executions(url: str) -> None:
    app = LedgerApplication(url)
    started = run("ex-1", end="running")
    events = started.collect_events()
    app.save(*events)
    with pytest.raises(ConcurrencyConflictError) as raised:
        app.save(*events[:2])
    assert raised.value.execution_ids == ("ex-1", str(started.id))


def test_execution_ids_scan_the_log_page_by_page(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_log, "NOTIFICATION_PAGE", 3)
    app = LedgerApplication(url)
    names = [f"ex-{index}" for index in range(7)]
    for name in names:
        app.save(run(name, steps=("a",)))  # 4 events each
    assert list(app.execution_ids()) == names
    started = list(app.started_events())
    assert [event.execution_id for _, event in started] == names
    after_third = started[2][0]
    assert list(app.execution_ids(after=after_third)) == names[3:]
    assert app.aggregate_ids() == [event.originator_id for _, event in started]


def test_the_process_environment_does_not_redirect_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("SQLITE_DBNAME", str(tmp_path / "elsewhere.db"))
    monkeypatch.setenv("LEDGERAPPLICATION_SQLITE_DBNAME", str(tmp_path / "elsewhere.db"))
    url = f"sqlite:///{tmp_path}/ledger.db"
    LedgerApplication(url).save(run("ex-1"))
    assert (tmp_path / "ledger.db").exists()
    assert not (tmp_path / "elsewhere.db").exists()
    assert LedgerApplication(url).load("ex-1").version == 6


def test_extra_settings_apply_over_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    app = LedgerApplication(
        url, env={"COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"}
    )
    app.save(run("ex-1"))
    assert app.load("ex-1").version == 6
    stored = app.stored_records(app.load("ex-1").id)
    assert not stored[0].state.startswith(b"{")  # compressed


def test_replay_applies_events_in_order() -> None:
    execution = run("ex-1")
    events = execution.collect_events()
    rebuilt = replay(None, events)
    assert rebuilt is not None
    assert rebuilt.state() == execution.state()
    assert replay(None, []) is None


def test_collected_events_save_in_one_transaction_or_not_at_all(url: str) -> None:
    app = LedgerApplication(url)
    one, two = run("one", end="running"), run("two", end="running")
    app.save_events([*one.collect_events(), *two.collect_events()])
    assert app.load("one") == one
    assert app.load("two") == two
    first, second = app.load("one"), app.load("one")
    first.complete({}, at(100))
    second.complete({}, at(101))
    app.save_events(list(first.collect_events()))
    three = run("three")
    with pytest.raises(ConcurrencyConflictError) as raised:
        app.save_events([*three.collect_events(), *second.collect_events()])
    assert "three" in raised.value.execution_ids
    assert str(second.id) in raised.value.execution_ids
    assert app.load("one").version == first.version
    with pytest.raises(ExecutionNotFoundError):
        app.load("three")


def test_a_snapshot_taken_now_records_that_moment_after_the_execution_moved_on(
    tmp_path: Path,
) -> None:
    app = LedgerApplication(f"sqlite:///{tmp_path}/s.db", snapshot_interval=100)
    execution = Execution.start("ex-1", chain_definition("a", "b"), {}, at(0))
    execution.start_step("a", {"n": 1}, at(1))
    app.save(execution)
    then = execution.state()
    snapshot = app.snapshot_of(execution)
    # The execution moves on (a's record changes in place) before the snapshot is stored.
    execution.complete_step("a", {"late": True}, 1, at(2))
    execution.start_step("b", {}, at(3))
    app.record_snapshot(snapshot)
    assert app.snapshots is not None
    stored = list(app.snapshots.get(execution.id))
    assert [s.originator_version for s in stored] == [then.version]
    assert stored[0].mutate(None).state() == then


def snapshotted(tmp_path: Path) -> tuple[str, Execution]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    execution = long_execution("ex-1", 61)  # longer than what loads without snapshots
    writer = LedgerApplication(url, snapshot_interval=10)
    writer.save(execution)
    writer.close()
    return url, execution


def test_a_snapshot_loads_in_a_process_that_never_saw_its_definition(
    tmp_path: Path, empty_cache: None
) -> None:
    url, execution = snapshotted(tmp_path)
    snapshot_module._DEFINITIONS.clear()
    reader = LedgerApplication(url, snapshot_interval=10)
    loaded = reader.load("ex-1")
    assert loaded == execution
    assert loaded.definition_dict() == execution.definition_dict()
    assert reader.load("ex-1", version=25).version == 25


@pytest.mark.parametrize(
    "change",
    [
        lambda state: None,
        edit_json(lambda document: document.update(definition='{"id":"forged"}')),
    ],
    ids=["first event deleted", "definition forged"],
)
def test_a_snapshot_without_its_true_definition_is_a_corrupt_record(
    tmp_path: Path, empty_cache: None, change: Any
) -> None:
    url, _ = snapshotted(tmp_path)
    tamper(url, "ex-1", 1, change)
    snapshot_module._DEFINITIONS.clear()
    reader = LedgerApplication(url, snapshot_interval=10)
    with pytest.raises(CorruptRecordError, match="version 1"):
        reader.load("ex-1")


@pytest.mark.parametrize("events", [5, 10, 11, 33, 35])
def test_loads_read_events_or_a_snapshot_whatever_interval_wrote_them(
    tmp_path: Path, events: int
) -> None:
    """An execution no longer than the interval is replayed; a longer one from a snapshot."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    execution = long_execution("ex-1", events)
    writer = LedgerApplication(url, snapshot_interval=3)  # another writer's interval
    writer.save(execution)
    reader = LedgerApplication(url, snapshot_interval=10)
    assert reader.load("ex-1") == execution
    for version in (1, events // 2, events):
        assert reader.load("ex-1", version=version) == writer.load("ex-1", version=version)


def test_a_short_execution_without_its_first_event_is_a_corrupt_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    LedgerApplication(url).save(long_execution("ex-1", 5))
    tamper(url, "ex-1", 1, lambda state: None)
    with pytest.raises(CorruptRecordError, match="first event is missing"):
        LedgerApplication(url).load("ex-1")


def test_a_first_event_whose_definition_is_not_a_definition_is_a_corrupt_record(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    LedgerApplication(url).save(long_execution("ex-1", 5))
    tamper(url, "ex-1", 1, edit_json(lambda document: document.update(definition='{"id":1}')))
    with pytest.raises(CorruptRecordError, match="not a workflow definition"):
        LedgerApplication(url).load("ex-1")
