"""The SQLite store's own connections: one per reading thread, one for writing events.

eventsourcing's SQLite recorders read and write through one connection pool: each call
takes a pooled connection under the pool's reader/writer interlock and wraps even a
single statement in an explicit transaction. That bookkeeping was a third of reading a
short execution and a quarter of saving a step's events; reads also varied with which
pooled connection (and page cache) they were given. These connections keep it out of
the way (see :mod:`flowledger.engine.sqlite_store`):

- a read is one ``SELECT`` in autocommit mode, on a connection the thread keeps: its
  own read transaction, which sees exactly what was committed before it began;
- events are written on one connection, one writer at a time in this process, each
  save in a ``BEGIN IMMEDIATE`` transaction; the library's errors are raised as the
  pool's transactions raised them (a conflicting version is its ``IntegrityError``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, cast

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

__all__ = ["ReadConnections", "WriteConnection"]


def _connect(db_name: str, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(
        db_name,
        uri=True,
        timeout=timeout,
        isolation_level=None,  # autocommit: transactions are explicit, or one statement
        check_same_thread=False,  # closed by whichever thread closes the store
    )


class ReadConnections:
    """One read connection per thread to a SQLite file, closed together.

    A connection of a thread that has ended is closed when another thread opens one, so
    a process that reads from many short-lived threads holds no more connections than
    it has threads reading.

    Args:
        db_name: The database, as eventsourcing's pool opens it (a path or a URI).
        timeout: Seconds to wait for a lock (SQLite's busy timeout).
    """

    def __init__(self, db_name: str, timeout: float) -> None:
        self._db_name = db_name
        self._timeout = timeout
        self._by_thread: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self._closed = False

    def connection(self) -> sqlite3.Connection | None:
        """This thread's connection, opened on first use; None once closed."""
        thread = threading.current_thread()
        found = self._by_thread.get(thread)
        if found is not None:
            return found
        with self._lock:
            if self._closed:
                return None
            for ended in [other for other in self._by_thread if not other.is_alive()]:
                self._by_thread.pop(ended).close()
            opened = _connect(self._db_name, self._timeout)
            self._by_thread[thread] = opened
            return opened

    def close(self) -> None:
        """Close every connection; later reads go through eventsourcing's pool."""
        with self._lock:
            self._closed = True
            for opened in self._by_thread.values():
                opened.close()
            self._by_thread.clear()

    def __len__(self) -> int:
        """Return how many connections are open."""
        return len(self._by_thread)


class WriteConnection:
    """The connection events are written on, one transaction at a time in this process.

    Args:
        db_name: The database, as eventsourcing's pool opens it (a path or a URI).
        timeout: Seconds to wait for another process's write lock.
    """

    def __init__(self, db_name: str, timeout: float) -> None:
        self._db_name = db_name
        self._timeout = timeout
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def insert(self, statement: str, rows: Iterable[Sequence[Any]]) -> list[int] | None:
        """Insert ``rows`` in one transaction; return their row ids (None: closed).

        Raises:
            IntegrityError: A row's key is taken (another writer recorded that version
                first); nothing of this transaction was written.
            PersistenceError: Another database error (eventsourcing's class for it);
                nothing was written.
        """
        with self._lock:
            if self._closed:
                return None
            if self._connection is None:
                self._connection = _connect(self._db_name, self._timeout)
                # SQLite's default, said out loud: every commit is flushed to disk.
                self._connection.execute("PRAGMA synchronous=FULL")
            connection = self._connection
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    ids = [cast(int, connection.execute(statement, row).lastrowid) for row in rows]
                    connection.execute("COMMIT")
                except BaseException:
                    connection.rollback()  # a no-op if SQLite already rolled back
                    raise
            except sqlite3.Error as error:
                raise library_error(error) from error
            return ids

    def close(self) -> None:
        """Close the connection; later writes go through eventsourcing's pool."""
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None


_LIBRARY_ERRORS: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.DataError, DataError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.InterfaceError, InterfaceError),
)


def library_error(error: sqlite3.Error) -> PersistenceError:
    """Return eventsourcing's exception for a ``sqlite3`` one, as its transactions raise."""
    for raised, library in _LIBRARY_ERRORS:
        if isinstance(error, raised):
            return library(error)
    return DatabaseError(error)
