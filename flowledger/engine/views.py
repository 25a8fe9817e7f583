"""The ledger's read models, kept up to date by polling its notification log.

:class:`LedgerViews` owns a :class:`~flowledger.projections.view_store.ViewStore` (the
execution index and the step metrics) and catches it up with the ledger: it reads the
notification log from the position the views have recorded, a page at a time, decodes
each page and records it with its position in one transaction. SQLite recorders cannot
push notifications, so catching up is done on demand, before each query.

Where the views live is decided by :func:`views_location`: beside a SQLite ledger in
its own file (so that writing views never waits for the engine's writer), in a private
in-memory database for ``memory://`` and, for now, for PostgreSQL, whose executions are
listed by scanning the ledger until views are kept in PostgreSQL itself.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from uuid import uuid4

from eventsourcing.persistence import IntegrityError, Notification, PersistenceError, Tracking

from flowledger.domain.state import ExecutionState
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.stores import StoreConfig
from flowledger.errors import CorruptRecordError, ExecutionNotFoundError, StoreError
from flowledger.projections.execution_index import (
    ExecutionIndexProjection,
    ExecutionQuery,
    IndexedExecution,
    to_micros,
)
from flowledger.projections.step_metrics import StepMetrics, StepMetricsProjection
from flowledger.projections.view_store import LoggedEvent, ViewStore

logger = logging.getLogger(__name__)

CATCH_UP_PAGE = 1000
"""Notifications read, decoded and recorded per transaction while catching up."""

LIST_BATCH = 500
"""Index rows read at a time when listing without a limit."""


@dataclass(frozen=True)
class ViewsLocation:
    """Where a ledger's read models are kept.

    Attributes:
        db_name: The SQLite file, or the URI of a private in-memory database.
        lists_executions: False when executions are listed by scanning the ledger
            instead of through the index.
    """

    db_name: str
    lists_executions: bool = True


def views_location(store: StoreConfig) -> ViewsLocation:
    """Return where the read models of the ledger in ``store`` are kept.

    ``sqlite:///path/x.db`` keeps them in ``path/x.views.db``. ``memory://`` keeps them
    in a private in-memory database. PostgreSQL keeps step metrics in a private
    in-memory database, rebuilt by each process on first use, and lists executions by
    scanning the ledger (views kept in PostgreSQL itself are still to come).
    """
    if store.kind == "sqlite":
        ledger_path = Path(store.env["SQLITE_DBNAME"])
        return ViewsLocation(str(ledger_path.with_name(f"{ledger_path.stem}.views.db")))
    # A uniquely named shared-cache URI: plain ":memory:" would give each pooled
    # connection a database of its own.
    private = f"file:flowledger-views-{uuid4().hex}?mode=memory&cache=shared"
    return ViewsLocation(private, lists_executions=store.kind == "memory")


class LedgerViews:
    """The execution index and step metrics of one ledger, caught up on demand.

    Thread-safe: catching up is serialised by a lock, and queries use the view store's
    own connection pool. Several processes may catch up the same views file at once;
    each page is recorded by one of them only.

    Args:
        app: The ledger application whose notification log feeds the views.
        location: Where the views are kept (default: :func:`views_location`).
        page_size: Notifications per catch-up transaction.

    Raises:
        StoreError: The views' database cannot be opened.
    """

    def __init__(
        self,
        app: LedgerApplication,
        *,
        location: ViewsLocation | None = None,
        page_size: int = CATCH_UP_PAGE,
    ) -> None:
        self._app = app
        self.location = location or views_location(app.store)
        self.page_size = page_size
        self._index = ExecutionIndexProjection()
        self._metrics = StepMetricsProjection()
        self._source = app.name
        self._lock = threading.Lock()
        self._origin_checked = False
        with self._errors():
            self._store = ViewStore(self.location.db_name, (self._index, self._metrics))

    @property
    def lists_executions(self) -> bool:
        """False when :meth:`states` should not be used (the ledger is scanned instead)."""
        return self.location.lists_executions

    def position(self) -> int:
        """Return the notification id the views have read up to."""
        with self._errors():
            return self._store.position(self._source)

    def catch_up(self) -> int:
        """Apply every notification recorded since the views' position.

        Unreadable records are skipped with a warning naming their notification id.

        Returns:
            How many notifications were read (unreadable ones included).

        Raises:
            StoreError: The views' database cannot be written.
        """
        with self._lock, self._errors():
            if not self._origin_checked:
                self._check_origin()
                self._origin_checked = True
            return self._catch_up()

    def rebuild(self) -> None:
        """Empty the views and build them again from the ledger's first event.

        Raises:
            StoreError: The views' database cannot be written.
        """
        with self._lock, self._errors():
            self._store.reset()
            self._origin_checked = True
            self._catch_up()

    def executions(self, query: ExecutionQuery) -> builtins.list[IndexedExecution]:
        """Catch up, then return the index rows ``query`` asks for, newest first."""
        self.catch_up()
        with self._errors(), self._store.datastore.transaction(commit=False) as cursor:
            return self._index.select(cursor, query)

    def states(self, query: ExecutionQuery) -> builtins.list[ExecutionState]:
        """Catch up, then return the current states of the executions ``query`` asks for.

        A state is loaded after the index is read, so an execution whose status moved
        on since is left out of a listing by status. An execution whose history cannot
        be read is skipped with a warning (``Ledger.verify`` reports it).
        """
        states: builtins.list[ExecutionState] = []
        limit = query.limit
        while limit is None or len(states) < limit:
            wanted = LIST_BATCH if limit is None else limit - len(states)
            rows = self.executions(replace(query, limit=wanted))
            for row in rows:
                state = self._load(row)
                if state is not None and (query.status is None or state.status is query.status):
                    states.append(state)
            if len(rows) < wanted:
                break
            query = replace(query, before=rows[-1].position)
        return states

    def metrics(
        self, workflow_id: str | None = None, action: str | None = None
    ) -> builtins.list[StepMetrics]:
        """Catch up, then return step metrics by (workflow, action), sorted."""
        self.catch_up()
        with self._errors(), self._store.datastore.transaction(commit=False) as cursor:
            return self._metrics.select(cursor, workflow_id, action)

    def close(self) -> None:
        """Close the views' database (an in-memory one is gone with it)."""
        with self._lock:
            self._store.close()

    # -- catching up ---------------------------------------------------------------------

    def _catch_up(self) -> int:
        read = 0
        while True:
            position = self._store.position(self._source)
            page = self._app.recorder.select_notifications(position + 1, self.page_size)
            if not page:
                return read
            tracking = Tracking(self._source, page[-1].id)
            origin = _identity(page[0]) if position == 0 else None
            try:
                self._store.record(self._decoded(page), tracking, origin)
            except IntegrityError:
                # Another process recorded this page first: go on from its position.
                if self._store.position(self._source) <= position:
                    raise
                continue
            read += len(page)
            if len(page) < self.page_size:
                return read

    def _decoded(self, page: Sequence[Notification]) -> builtins.list[LoggedEvent]:
        events: builtins.list[LoggedEvent] = []
        for notification in page:
            try:
                events.append(LoggedEvent(notification.id, self._app.decode(notification)))
            except CorruptRecordError:
                # Never the record's content: it may hold secrets.
                logger.warning(
                    "read models: skipped notification %d (aggregate %s, version %d): its "
                    "record cannot be read; Ledger.verify reports it",
                    notification.id,
                    notification.originator_id,
                    notification.originator_version,
                )
        return events

    def _check_origin(self) -> None:
        """Empty views that were built from another ledger (one deleted and recreated)."""
        if self._store.position(self._source) == 0:
            return
        first = self._app.recorder.select_notifications(1, 1)
        origin = _identity(first[0]) if first else None
        if origin is None or origin != self._store.origin(self._source):
            logger.warning(
                "read models in %s were built from another ledger; rebuilding them",
                self.location.db_name,
            )
            self._store.reset()

    def _load(self, row: IndexedExecution) -> ExecutionState | None:
        try:
            return self._app.load(row.execution_id).state()
        except (CorruptRecordError, ExecutionNotFoundError):
            logger.warning(
                "listing: skipped execution %r: its stored history cannot be read; "
                "Ledger.verify reports it",
                row.execution_id,
            )
            return None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn the library's and sqlite3's errors on the views' database into StoreError."""
        try:
            yield
        except (PersistenceError, sqlite3.Error) as error:
            reason = f"read models cannot be used: {error}"
            raise StoreError(self.location.db_name, reason) from error


def _identity(notification: Notification) -> str:
    """What identifies a ledger: its first notification's id, aggregate and version."""
    return f"{notification.id}:{notification.originator_id}:{notification.originator_version}"


def scan_executions(app: LedgerApplication, query: ExecutionQuery) -> builtins.list[ExecutionState]:
    """Return the states ``query`` asks for by reading every execution's first event.

    For ledgers whose executions are not indexed: it reads the first event of every
    execution, newest first, and loads the states of those that match.
    """
    since = None if query.since is None else to_micros(query.since)
    until = None if query.until is None else to_micros(query.until)
    started = [event for _, event in app.started_events()]
    states: builtins.list[ExecutionState] = []
    for event in reversed(started):
        if query.limit is not None and len(states) >= query.limit:
            break
        created = to_micros(event.timestamp)
        if (
            (query.workflow_id is not None and event.workflow_id != query.workflow_id)
            or (since is not None and created < since)
            or (until is not None and created > until)
        ):
            continue
        state = app.load(event.execution_id).state()
        if query.status is None or state.status is query.status:
            states.append(state)
    return states
