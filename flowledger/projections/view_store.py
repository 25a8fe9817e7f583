"""The SQLite database that holds the read models and how far they have read the ledger.

:class:`ViewStore` is an eventsourcing tracking recorder: each page of events is applied
to every read model, and the position of the page's last notification is recorded, in
*one* transaction. A crash therefore leaves the views either with the whole page and
its position, or with neither, and catching up again from the recorded position never
counts an event twice. Two processes catching up the same views at once are kept apart
by the tracking row itself: the one that records a position second is refused and its
transaction (view rows included) rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from flowledger.domain.events import ExecutionEvent

VIEWS_SCHEMA_VERSION = 1
"""Version of the views' tables; a database of another version is emptied and rebuilt."""


class LoggedEvent(NamedTuple):
    """An execution event and its position in the ledger's notification log.

    Attributes:
        position: The notification id (increasing in the order events were recorded).
        event: The decoded event.
    """

    position: int
    event: ExecutionEvent


class ViewProjection(Protocol):
    """A read model kept in a :class:`ViewStore`."""

    @property
    def tables(self) -> Sequence[str]:
        """Names of the tables the read model owns (emptied by a rebuild)."""
        ...

    def create_statements(self) -> list[str]:
        """Return the statements that create the read model's tables and indexes."""
        ...

    def apply(self, cursor: SQLiteCursor, events: Sequence[LoggedEvent]) -> None:
        """Apply a page of events, in log order, within the caller's transaction."""
        ...


class ViewStore(SQLiteTrackingRecorder):
    """Read models in one SQLite database, with the position they have read up to.

    Args:
        db_name: A file path, or a SQLite URI (``file:name?mode=memory&cache=shared``
            for a private in-memory database).
        projections: The read models kept here, applied in this order.

    Raises:
        eventsourcing.persistence.PersistenceError: The database cannot be opened.
    """

    def __init__(self, db_name: str, projections: Sequence[ViewProjection]) -> None:
        self.projections = tuple(projections)
        super().__init__(SQLiteDatastore(db_name, originator_id_type="text"))
        self.create_table()

    def construct_create_table_statements(self) -> list[str]:
        """Return the tracking table's statements, then every read model's."""
        statements = super().construct_create_table_statements()
        statements.append(
            "CREATE TABLE IF NOT EXISTS view_source (name TEXT PRIMARY KEY, origin TEXT NOT NULL)"
        )
        for projection in self.projections:
            statements.extend(projection.create_statements())
        return statements

    def create_table(self) -> None:
        """Create the tables, first dropping those of another schema version."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("PRAGMA user_version")
            if cursor.fetchone()[0] != VIEWS_SCHEMA_VERSION:
                # Views are derived data: a database written by another version of
                # flowledger is emptied, and the next catch-up rebuilds it.
                for table in (*self._view_tables(), "tracking"):
                    cursor.execute(f"DROP TABLE IF EXISTS {table}")
                cursor.execute(f"PRAGMA user_version = {VIEWS_SCHEMA_VERSION}")
        super().create_table()

    def _view_tables(self) -> list[str]:
        return ["view_source", *(table for p in self.projections for table in p.tables)]

    def position(self, source: str) -> int:
        """Return the notification id the views have read up to (0: nothing yet)."""
        return self.max_tracking_id(source) or 0

    def origin(self, source: str) -> str | None:
        """Return what identifies the log the views were built from, or None if unknown."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT origin FROM view_source WHERE name = ?", (source,))
            row = cursor.fetchone()
        return None if row is None else str(row[0])

    def record(
        self, events: Sequence[LoggedEvent], tracking: Tracking, origin: str | None = None
    ) -> None:
        """Apply a page of events to every read model and record its position, atomically.

        Args:
            events: The page's events that could be read, in log order.
            tracking: The source's name and the id of the page's last notification
                (unreadable notifications included, so they are not read again).
            origin: What identifies the log (recorded with the first page).

        Raises:
            eventsourcing.persistence.IntegrityError: The views already hold this
                position (another process recorded it first); nothing was written.
        """
        with self.datastore.transaction(commit=True) as cursor:
            for projection in self.projections:
                projection.apply(cursor, events)
            if origin is not None:
                cursor.execute(
                    "INSERT OR REPLACE INTO view_source VALUES (?, ?)",
                    (tracking.application_name, origin),
                )
            self._insert_tracking(cursor, tracking)

    def reset(self) -> None:
        """Empty every read model and forget every position, in one transaction."""
        with self.datastore.transaction(commit=True) as cursor:
            for table in self._view_tables():
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - names of our tables
            cursor.execute(
                "DELETE FROM tracking WHERE application_name != ?",
                (self.table_migration_identifier,),
            )

    def close(self) -> None:
        """Close the database's connections."""
        self.datastore.close()
