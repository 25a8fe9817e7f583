"""The SQLite store: eventsourcing's, reading and writing events on connections of its own.

The recorders below are eventsourcing's SQLite recorders with their ``select_events``
(events and snapshots) and the events' ``insert_events`` run on the connections of
:mod:`flowledger.engine.sqlite_connections` instead of the library's pool: a read keeps
the id it was asked for instead of rebuilding a UUID per row, and selects only the
columns it returns. The tables, the rows, the notification ids and the errors are the
library's; everything else (snapshot writes, notifications, tracking) is its own code.
An in-memory database, a closed store, or a recorder class named in the settings goes
through the pool as before.
"""

from __future__ import annotations

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

from flowledger.engine.sqlite_connections import ReadConnections, WriteConnection

__all__ = ["FACTORY_TOPIC", "LedgerSQLiteFactory"]

FACTORY_TOPIC = "flowledger.engine.sqlite_store:LedgerSQLiteFactory"
"""The ``PERSISTENCE_MODULE`` setting that selects this store."""


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


class LedgerAggregateRecorder(SQLiteAggregateRecorder):
    """A table of stored events (the snapshots'), read on the thread's own connection."""

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
        """Select an aggregate's stored events, as eventsourcing's recorder does."""
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


class LedgerEventRecorder(LedgerAggregateRecorder, SQLiteApplicationRecorder):
    """The events table: read like any other, written on the store's own connection."""

    writes: WriteConnection | None = None

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert events in one transaction; return their notification ids."""
        rows = [
            (
                s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            for s in stored_events
        ]
        ids = (
            None if self.writes is None else self.writes.insert(self.insert_events_statement, rows)
        )
        if ids is None:
            return super().insert_events(stored_events, **kwargs)
        return ids


class LedgerSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, whose recorders share the store's own connections."""

    aggregate_recorder_class = LedgerAggregateRecorder
    application_recorder_class = LedgerEventRecorder

    def __init__(self, env: Any) -> None:
        """Open the datastore as eventsourcing does; the own connections open on use."""
        super().__init__(env)
        pool = self.datastore.pool
        timeout = pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT
        # An in-memory database is one per connection: only the pool's can see it.
        on_file = not pool.is_sqlite_memory_mode
        self.reads = ReadConnections(pool.db_name, timeout) if on_file else None
        self.writes = WriteConnection(pool.db_name, timeout) if on_file else None

    def aggregate_recorder(self, purpose: str = "events") -> Any:
        """Return the recorder of ``stored_<purpose>``, reading on its own connections."""
        return self._connected(super().aggregate_recorder(purpose))

    def application_recorder(self) -> Any:
        """Return the events recorder, reading on its own connections.

        A recorder class named by ``APPLICATION_RECORDER_TOPIC`` reads and writes as it does.
        """
        return self._connected(super().application_recorder())

    def _connected(self, recorder: Any) -> Any:
        if isinstance(recorder, LedgerAggregateRecorder):
            recorder.reads = self.reads
        if isinstance(recorder, LedgerEventRecorder):
            recorder.writes = self.writes
        return recorder

    def close(self) -> None:
        """Close the store's own connections, then eventsourcing's pool."""
        if self.reads is not None:
            self.reads.close()
        if self.writes is not None:
            self.writes.close()
        super().close()
