"""The SQLite store's write connection: one transaction per save, the library's errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventsourcing import persistence

from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.sqlite_connections import WriteConnection, library_error
from flowledger.errors import ConcurrencyConflictError
from tests.engine.test_ledger_app import long_execution

INSERT = "INSERT INTO items VALUES (?, ?)"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "items.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE items (key TEXT PRIMARY KEY, value INTEGER)")
    return path


@pytest.fixture
def writes(database: Path) -> Iterator[WriteConnection]:
    connection = WriteConnection(str(database), timeout=0)
    yield connection
    connection.close()


def stored(database: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT key, value FROM items ORDER BY rowid").fetchall()


def test_rows_are_written_together_and_their_row_ids_returned(
    writes: WriteConnection, database: Path
) -> None:
    assert writes.insert(INSERT, [("a", 1), ("b", 2)]) == [1, 2]
    assert writes.insert(INSERT, [("c", 3)]) == [3]
    assert stored(database) == [("a", 1), ("b", 2), ("c", 3)]


def test_a_taken_key_writes_nothing_of_the_transaction(
    writes: WriteConnection, database: Path
) -> None:
    writes.insert(INSERT, [("a", 1)])
    with pytest.raises(persistence.IntegrityError) as raised:
        writes.insert(INSERT, [("b", 2), ("a", 3)])
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    assert stored(database) == [("a", 1)]
    assert writes.insert(INSERT, [("b", 2)]) == [2]  # the connection is usable again


def test_a_write_lock_held_elsewhere_is_the_librarys_operational_error(
    writes: WriteConnection, database: Path
) -> None:
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(persistence.OperationalError, match="locked"):
            writes.insert(INSERT, [("a", 1)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert writes.insert(INSERT, [("a", 1)]) == [1]


def test_once_closed_it_writes_nothing(writes: WriteConnection, database: Path) -> None:
    writes.close()
    assert writes.insert(INSERT, [("a", 1)]) is None
    assert stored(database) == []


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (sqlite3.IntegrityError, persistence.IntegrityError),
        (sqlite3.OperationalError, persistence.OperationalError),
        (sqlite3.ProgrammingError, persistence.ProgrammingError),
        (sqlite3.DataError, persistence.DataError),
        (sqlite3.InternalError, persistence.InternalError),
        (sqlite3.NotSupportedError, persistence.NotSupportedError),
        (sqlite3.InterfaceError, persistence.InterfaceError),
        (sqlite3.DatabaseError, persistence.DatabaseError),
        (sqlite3.Error, persistence.DatabaseError),
    ],
)
def test_sqlite_errors_become_the_librarys(
    raised: type[sqlite3.Error], expected: type[persistence.PersistenceError]
) -> None:
    error = library_error(raised("boom"))
    assert type(error) is expected
    assert str(error) == "boom"


def test_a_ledger_whose_write_connection_closed_saves_through_the_pool(tmp_path: Path) -> None:
    app = LedgerApplication(f"sqlite:///{tmp_path}/ledger.db")
    try:
        app.save(long_execution("first", 3))
        app.factory.writes.close()  # type: ignore[attr-defined]
        app.save(long_execution("second", 3))
        with pytest.raises(ConcurrencyConflictError):
            app.save(long_execution("second", 3))  # the pool's conflicts are the same
        assert [app.load(name).version for name in ("first", "second")] == [3, 3]
    finally:
        app.close()


def test_two_ledgers_on_one_file_conflict_on_the_same_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    first, second = LedgerApplication(url), LedgerApplication(url)
    try:
        first.save(long_execution("shared", 3))
        with pytest.raises(ConcurrencyConflictError):
            second.save(long_execution("shared", 3))
        assert second.load("shared").version == 3
    finally:
        first.close()
        second.close()
