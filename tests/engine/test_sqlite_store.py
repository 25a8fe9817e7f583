"""The SQLite store's reads: one connection per reading thread, the same rows as the pool's."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.domain.execution import execution_uuid
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.sqlite_connections import ReadConnections
from flowledger.engine.sqlite_store import (
    FACTORY_TOPIC,
    LedgerEventRecorder,
    LedgerSQLiteFactory,
)
from tests.engine.test_ledger_app import long_execution

EVENTS = 9


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LedgerApplication]:
    """A SQLite ledger holding one execution of :data:`EVENTS` events, and snapshots."""
    ledger = LedgerApplication(f"sqlite:///{tmp_path}/ledger.db", snapshot_interval=4)
    execution = long_execution("read-me", EVENTS)
    ledger.save(execution)
    ledger.put_snapshot(execution)
    yield ledger
    ledger.close()


def reads_of(app: LedgerApplication) -> ReadConnections:
    reads = app.factory.reads  # type: ignore[attr-defined]
    assert isinstance(reads, ReadConnections)
    return reads


def rows(records: Any) -> list[tuple[Any, ...]]:
    return [(r.originator_id, r.originator_version, r.topic, r.state) for r in records]


def read_in_thread(app: LedgerApplication) -> sqlite3.Connection:
    """Read once from a new thread that then ends; return the connection it read on."""
    used: list[sqlite3.Connection] = []

    def read() -> None:
        app.load("read-me")
        connection = reads_of(app).connection()
        assert connection is not None
        used.append(connection)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return used[0]


def test_sqlite_urls_select_this_store(app: LedgerApplication) -> None:
    assert app.store.env["PERSISTENCE_MODULE"] == FACTORY_TOPIC
    assert isinstance(app.factory, LedgerSQLiteFactory)
    assert isinstance(app.recorder, LedgerEventRecorder)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gt=st.none() | st.integers(0, EVENTS + 1),
    lte=st.none() | st.integers(0, EVENTS + 1),
    desc=st.booleans(),
    limit=st.none() | st.integers(1, EVENTS + 1),
)
def test_reads_return_what_eventsourcings_recorder_returns(
    app: LedgerApplication, gt: int | None, lte: int | None, desc: bool, limit: int | None
) -> None:
    options: dict[str, Any] = {"gt": gt, "lte": lte, "desc": desc, "limit": limit}
    key = execution_uuid("read-me")
    assert app.snapshots is not None
    for recorder in (app.recorder, app.snapshots.recorder):
        assert isinstance(recorder, SQLiteAggregateRecorder)
        ours = recorder.select_events(key, **options)
        theirs = SQLiteAggregateRecorder.select_events(recorder, key, **options)
        assert rows(ours) == rows(theirs)
    assert len(reads_of(app)) == 1  # every read above was on this thread's connection


def test_a_read_sees_what_was_committed_since_the_last_read(app: LedgerApplication) -> None:
    execution = app.load("read-me")
    execution.complete({}, execution.state().updated_at)
    before = app.recorder.select_events(execution_uuid("read-me"))
    app.save(execution)
    after = app.recorder.select_events(execution_uuid("read-me"))
    assert [len(before), len(after)] == [EVENTS, EVENTS + 1]
    assert app.load("read-me").version == EVENTS + 1


def test_each_reading_thread_has_a_connection_of_its_own(app: LedgerApplication) -> None:
    app.load("read-me")
    mine = reads_of(app).connection()
    theirs = read_in_thread(app)
    assert mine is not None
    assert theirs is not mine
    assert reads_of(app).connection() is mine


def test_a_connection_of_an_ended_thread_is_closed_when_another_opens(
    app: LedgerApplication,
) -> None:
    app.load("read-me")
    first = read_in_thread(app)
    assert len(reads_of(app)) == 2  # this thread's, and the ended thread's
    second = read_in_thread(app)
    assert len(reads_of(app)) == 2  # the ended thread's was replaced
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")
    assert second.execute("SELECT 1").fetchone() == (1,)


def test_once_closed_reads_go_through_eventsourcings_pool(app: LedgerApplication) -> None:
    app.load("read-me")
    mine = reads_of(app).connection()
    reads_of(app).close()
    assert len(reads_of(app)) == 0
    assert reads_of(app).connection() is None
    assert mine is not None
    with pytest.raises(sqlite3.ProgrammingError):
        mine.execute("SELECT 1")
    assert app.load("read-me").version == EVENTS  # read through the pool instead
    assert app.snapshots is not None
    snapshots = app.snapshots.recorder
    assert isinstance(snapshots, SQLiteAggregateRecorder)
    key = execution_uuid("read-me")
    assert [r.originator_version for r in snapshots.select_events(key)] == [4, 8, EVENTS]


def test_closing_the_ledger_closes_every_read_connection(tmp_path: Path) -> None:
    app = LedgerApplication(f"sqlite:///{tmp_path}/ledger.db")
    app.save(long_execution("read-me", 3))
    app.load("read-me")
    assert len(reads_of(app)) == 1
    app.close()
    assert len(reads_of(app)) == 0
    assert reads_of(app).connection() is None


def test_an_in_memory_database_is_read_through_the_pool() -> None:
    # Each connection to an in-memory database would see a database of its own.
    factory = LedgerSQLiteFactory(
        {"SQLITE_DBNAME": "file:flowledger-reads?mode=memory&cache=shared"}
    )
    try:
        assert factory.reads is None
        recorder = factory.application_recorder()
        assert isinstance(recorder, LedgerEventRecorder)
        assert recorder.reads is None
        assert list(recorder.select_events(execution_uuid("nothing"))) == []
    finally:
        factory.close()


def test_a_recorder_class_named_in_the_settings_reads_as_it_does(tmp_path: Path) -> None:
    topic = "eventsourcing.sqlite:SQLiteApplicationRecorder"
    app = LedgerApplication(
        f"sqlite:///{tmp_path}/ledger.db", env={"APPLICATION_RECORDER_TOPIC": topic}
    )
    try:
        assert type(app.recorder) is SQLiteApplicationRecorder
        app.save(long_execution("read-me", 3))
        assert app.load("read-me").version == 3
        assert len(reads_of(app)) == 0
    finally:
        app.close()
