"""The execution index: one row per execution, to list and filter executions cheaply.

Each row holds what a listing filters and orders by: the execution's id, workflow,
status, when it was created and last changed, its version, and the position of its
first event in the ledger's notification log (the order of "newest first"). The status
is derived from the event types exactly as the ``Execution`` aggregate derives it:
``ExecutionStarted`` makes it RUNNING, and every execution transition event
(``ExecutionPaused``, ``ExecutionCompleted``, ``RollbackStarted``, ...) sets its own
``STATUS``; no other event changes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.sqlite import SQLiteCursor

from flowledger.domain.events import ExecutionEvent, ExecutionStarted, ExecutionTransition
from flowledger.domain.status import ExecutionStatus
from flowledger.projections.view_store import LoggedEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_RUNNING = ExecutionStatus.RUNNING.value


def to_micros(moment: datetime) -> int:
    """Return a moment as whole microseconds since the Unix epoch (naive is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """Return the UTC moment ``micros`` microseconds after the Unix epoch."""
    return _EPOCH + micros * _MICROSECOND


@dataclass(frozen=True)
class IndexedExecution:
    """One execution as the index holds it.

    Attributes:
        execution_id: The execution's public id.
        workflow_id: The id of the workflow it runs.
        status: Its status after the last event the index has read.
        created_at: When it started (UTC).
        updated_at: When its last read event happened (UTC).
        version: The version of its last read event.
        position: The notification id of its first event (larger: started later).
    """

    execution_id: str
    workflow_id: str
    status: ExecutionStatus
    created_at: datetime
    updated_at: datetime
    version: int
    position: int


@dataclass(frozen=True)
class ExecutionQuery:
    """Which executions to list; every field left as None does not filter.

    Attributes:
        status: Only executions in this status.
        workflow_id: Only executions of this workflow.
        since: Only executions created at or after this moment (timezone-aware).
        until: Only executions created at or before this moment (timezone-aware).
        before: Only executions whose first event is before this position (for
            reading a listing page after page).
        limit: At most this many rows (None: all).
    """

    status: ExecutionStatus | None = None
    workflow_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int | None = None


class ExecutionIndexProjection:
    """Keeps the ``execution_index`` table: one row per execution."""

    tables: Sequence[str] = ("execution_index",)

    def create_statements(self) -> list[str]:
        """Return the table and the indexes each filter orders by."""
        return [
            "CREATE TABLE IF NOT EXISTS execution_index ("
            "position INTEGER PRIMARY KEY, aggregate_id TEXT NOT NULL UNIQUE, "
            "execution_id TEXT NOT NULL, workflow_id TEXT NOT NULL, status TEXT NOT NULL, "
            "created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, "
            "version INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS execution_index_status "
            "ON execution_index (status, position)",
            "CREATE INDEX IF NOT EXISTS execution_index_workflow "
            "ON execution_index (workflow_id, position)",
            "CREATE INDEX IF NOT EXISTS execution_index_workflow_status "
            "ON execution_index (workflow_id, status, position)",
            "CREATE INDEX IF NOT EXISTS execution_index_created ON execution_index (created_at)",
        ]

    def apply(self, cursor: SQLiteCursor, events: Sequence[LoggedEvent]) -> None:
        """Insert a row for each started execution and move the others' rows on."""
        started: dict[str, list[Any]] = {}
        changed: dict[str, list[Any]] = {}
        for position, event in events:
            key = str(event.originator_id)
            if isinstance(event, ExecutionStarted):
                moment = to_micros(event.timestamp)
                started[key] = [
                    position,
                    key,
                    event.execution_id,
                    event.workflow_id,
                    _RUNNING,
                    moment,
                    moment,
                    event.originator_version,
                ]
            elif key in started:
                _move_on(started[key], event, status_at=4, updated_at=6, version_at=7)
            else:
                row = changed.setdefault(key, [None, 0, 0, key, 0])
                _move_on(row, event, status_at=0, updated_at=1, version_at=2)
                row[4] = row[2]
        # Guarded by version, so that applying an event twice would change nothing.
        cursor.executemany(
            "INSERT INTO execution_index VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (aggregate_id) DO UPDATE SET status = excluded.status, "
            "updated_at = excluded.updated_at, version = excluded.version "
            "WHERE excluded.version > execution_index.version",
            list(started.values()),
        )
        cursor.executemany(
            "UPDATE execution_index SET status = COALESCE(?, status), updated_at = ?, "
            "version = ? WHERE aggregate_id = ? AND version < ?",
            list(changed.values()),
        )

    def select(self, cursor: SQLiteCursor, query: ExecutionQuery) -> list[IndexedExecution]:
        """Return the executions ``query`` asks for, most recently started first."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("status = ?", None if query.status is None else query.status.value),
            ("workflow_id = ?", query.workflow_id),
            ("created_at >= ?", None if query.since is None else to_micros(query.since)),
            ("created_at <= ?", None if query.until is None else to_micros(query.until)),
            ("position < ?", query.before),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        params.append(-1 if query.limit is None else query.limit)
        cursor.execute(
            "SELECT execution_id, workflow_id, status, created_at, updated_at, version, "  # noqa: S608 - fixed clauses, values as parameters
            f"position FROM execution_index {where}ORDER BY position DESC LIMIT ?",
            params,
        )
        return [
            IndexedExecution(
                execution_id=row[0],
                workflow_id=row[1],
                status=ExecutionStatus(row[2]),
                created_at=from_micros(row[3]),
                updated_at=from_micros(row[4]),
                version=row[5],
                position=row[6],
            )
            for row in cursor.fetchall()
        ]


def _move_on(
    row: list[Any], event: ExecutionEvent, *, status_at: int, updated_at: int, version_at: int
) -> None:
    """Move a row (as a list) on by a later event of its execution."""
    if isinstance(event, ExecutionTransition):
        row[status_at] = event.STATUS
    row[updated_at] = to_micros(event.timestamp)
    row[version_at] = event.originator_version
