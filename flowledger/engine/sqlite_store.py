"""The SQLite store: eventsourcing's, with each thread reading on a connection of its own.

eventsourcing's SQLite recorders read through the connection pool they write with:
each read takes a pooled connection under the pool's reader/writer interlock, opens an
explicit transaction (``BEGIN`` ... ``ROLLBACK``), selects every column and turns each
row's id back into a UUID. For the short executions most reads are of, that was a third
of :meth:`Ledger.get <flowledger.engine.ledger.Ledger.get>`, and it varied with which
pooled connection (and page cache) a read was given. Here each thread that reads keeps
one connection: a single ``SELECT`` in autocommit mode is its own read transaction, so
it sees exactly the transactions committed before it began, as the pooled read did.
Writes, notifications and tracking are eventsourcing's own.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteFactory,
)

__all__ = ["FACTORY_TOPIC", "LedgerSQLiteFactory", "ReadConnections"]

FACTORY_TOPIC = "flowledger.engine.sqlite_store:LedgerSQLiteFactory"
"""The ``PERSISTENCE_MODULE`` setting that selects this store."""


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
            opened = sqlite3.connect(
                self._db_name,
                uri=True,
                timeout=self._timeout,
                isolation_level=None,  # autocommit: each SELECT is its own read transaction
                check_same_thread=False,  # closed by whichever thread closes the store
            )
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


def select_events(
    reads: ReadConnections | None,
    table: str,
    originator_id: UUID | str,
    *,
    gt: int | None,
    lte: int | None,
    desc: bool,
    limit: int | None,
) -> list[StoredEvent] | None:
    """Read one aggregate's stored events on this thread's connection (None: closed).

    The rows keep the id they were asked for, as eventsourcing's read returns it.
    """
    connection = reads.connection() if reads is not None else None
    if connection is None:
        return None
    key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
    # The table is the recorder's own name (``stored_<purpose>``), never user input.
    statement = f"SELECT originator_version, topic, state FROM {table} WHERE originator_id=?"  # noqa: S608
    params: list[Any] = [key]
    if gt is not None:
        statement += " AND originator_version>?"
        params.append(gt)
    if lte is not None:
        statement += " AND originator_version<=?"
        params.append(lte)
    statement += " ORDER BY originator_version DESC" if desc else " ORDER BY originator_version"
    if limit is not None:
        statement += " LIMIT ?"
        params.append(limit)
    rows = connection.execute(statement, params).fetchall()
    return [StoredEvent(originator_id, version, topic, state) for version, topic, state in rows]


class LedgerEventRecorder(SQLiteApplicationRecorder):
    """The events table, read on the thread's own connection (see the module)."""

    reads: ReadConnections | None = None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """Select an aggregate's events, as eventsourcing's recorder does."""
        found = select_events(
            self.reads,
            self.events_table_name,
            originator_id,
            gt=gt,
            lte=lte,
            desc=desc,
            limit=limit,
        )
        if found is None:
            return super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        return found


class LedgerSnapshotRecorder(SQLiteAggregateRecorder):
    """The snapshots table, read on the thread's own connection (see the module)."""

    reads: ReadConnections | None = None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """Select an aggregate's snapshots, as eventsourcing's recorder does."""
        found = select_events(
            self.reads,
            self.events_table_name,
            originator_id,
            gt=gt,
            lte=lte,
            desc=desc,
            limit=limit,
        )
        if found is None:
            return super().select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        return found


class LedgerSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, whose recorders share :class:`ReadConnections`."""

    aggregate_recorder_class = LedgerSnapshotRecorder
    application_recorder_class = LedgerEventRecorder

    def __init__(self, env: Any) -> None:
        """Open the datastore as eventsourcing does; read connections open on use."""
        super().__init__(env)
        pool = self.datastore.pool
        timeout = pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT
        # An in-memory database is one per connection: only the pool's can see it.
        self.reads = None if pool.is_sqlite_memory_mode else ReadConnections(pool.db_name, timeout)

    def aggregate_recorder(self, purpose: str = "events") -> Any:
        """Return the recorder of ``stored_<purpose>``, reading on its own connections."""
        return self._reading(super().aggregate_recorder(purpose))

    def application_recorder(self) -> Any:
        """Return the events recorder, reading on its own connections.

        A recorder class named by ``APPLICATION_RECORDER_TOPIC`` reads as it does.
        """
        return self._reading(super().application_recorder())

    def _reading(self, recorder: Any) -> Any:
        if isinstance(recorder, LedgerEventRecorder | LedgerSnapshotRecorder):
            recorder.reads = self.reads
        return recorder

    def close(self) -> None:
        """Close the read connections, then eventsourcing's pool."""
        if self.reads is not None:
            self.reads.close()
        super().close()
