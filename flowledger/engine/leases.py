"""Leases: which engine drives which execution, when several engines share a store.

Each execution that needs driving has one lease row: the worker holding it (None when
nobody does) and when the lease expires. A worker claims rows that are free or expired,
renews all of its rows in one statement while it runs, and hands a row back (free at
once) when it stops driving an execution without finishing it, or deletes it when the
execution comes to rest (terminal or paused). A worker that dies stops renewing; its rows
expire and other workers take them over. Only the rows of executions the worker is
driving are renewed, so a row it claimed but could not adopt expires too.

The lease decides who *should* drive an execution; the history decides who *does*:
claims and takeovers are recorded as events on the execution, so a worker that lost its
lease finds its next save refused (the execution's version moved on) and stops. Times
are the database server's clock, so workers on several machines agree on expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from flowledger.engine.postgres_setup import connect
from flowledger.engine.stores import StoreConfig
from flowledger.errors import StoreError

DEFAULT_LEASE_SECONDS = 15.0
"""How long a claim lasts unless renewed (the worker renews it every third of this)."""

TABLE = "flowledger_leases"
"""The lease table's name (in the store's schema)."""


@dataclass(frozen=True)
class Claim:
    """A lease row a worker just claimed.

    Attributes:
        execution_id: The execution.
        previous_worker: The worker that held the row before, if another did.
        expired: The previous worker's lease ran out unrenewed (a takeover).
    """

    execution_id: str
    previous_worker: str | None = None
    expired: bool = False


class Leases(Protocol):
    """The lease rows of one store (thread-safe; every method is one transaction)."""

    lease_seconds: float

    def offer(self, execution_id: str) -> None:
        """Add a free row for the execution (for any worker), unless it has one."""

    def claim(self, execution_id: str, worker: str) -> Claim | None:
        """Claim this execution's row if it is missing, free, expired or ``worker``'s own.

        Returns None when another worker holds an unexpired lease on it.
        """

    def claim_available(self, worker: str, limit: int) -> list[Claim]:
        """Claim up to ``limit`` rows that are free or expired: expired ones first.

        Taking over from a dead worker comes before new work, so a takeover waits for
        the lease to expire, not for the backlog of new executions to be claimed.
        """

    def renew(self, worker: str, execution_ids: Collection[str]) -> set[str]:
        """Extend ``worker``'s leases of these executions; return those it still holds.

        A row the worker holds but no longer drives is not renewed: it expires.
        """

    def release(self, execution_id: str, worker: str) -> None:
        """Hand the row back, free at once for any worker (if ``worker`` holds it)."""

    def finish(self, execution_id: str, worker: str) -> None:
        """Delete the row: the execution rests (if ``worker`` holds it, or nobody does)."""

    def holder(self, execution_id: str) -> str | None:
        """The worker whose unexpired lease covers the execution, or None."""

    def close(self) -> None:
        """Release connections."""


class MemoryLeases:
    """Lease rows in this process: engines sharing one in-process ledger application.

    Args:
        lease_seconds: How long a claim lasts unless renewed.
    """

    def __init__(self, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[str | None, float]] = {}

    def offer(self, execution_id: str) -> None:  # noqa: D102 - see Leases
        with self._lock:
            self._rows.setdefault(execution_id, (None, 0.0))

    def claim(self, execution_id: str, worker: str) -> Claim | None:  # noqa: D102
        with self._lock:
            holder, expires = self._rows.get(execution_id, (None, 0.0))
            return self._take(execution_id, worker, holder, expires)

    def claim_available(self, worker: str, limit: int) -> list[Claim]:  # noqa: D102
        with self._lock:
            now = time.monotonic()
            due = sorted(
                (row[0] is None, row[1], key) for key, row in self._rows.items() if row[1] < now
            )
            claims = []
            for _, _, key in due[:limit]:
                holder, expires = self._rows[key]
                claim = self._take(key, worker, holder, expires)
                if claim is not None:  # pragma: no branch - due rows are free or expired
                    claims.append(claim)
            return claims

    def _take(self, key: str, worker: str, holder: str | None, expires: float) -> Claim | None:
        now = time.monotonic()
        if holder not in (None, worker) and expires >= now:
            return None
        self._rows[key] = (worker, now + self.lease_seconds)
        if holder in (None, worker):
            return Claim(key)
        return Claim(key, holder, expired=True)

    def renew(self, worker: str, execution_ids: Collection[str]) -> set[str]:  # noqa: D102
        with self._lock:
            until = time.monotonic() + self.lease_seconds
            held = {key for key in execution_ids if self._rows.get(key, (None,))[0] == worker}
            for key in held:
                self._rows[key] = (worker, until)
            return held

    def release(self, execution_id: str, worker: str) -> None:  # noqa: D102
        with self._lock:
            if self._rows.get(execution_id, (None, 0.0))[0] == worker:
                self._rows[execution_id] = (None, 0.0)

    def finish(self, execution_id: str, worker: str) -> None:  # noqa: D102
        with self._lock:
            if self._rows.get(execution_id, (worker, 0.0))[0] in (None, worker):
                self._rows.pop(execution_id, None)

    def holder(self, execution_id: str) -> str | None:  # noqa: D102
        with self._lock:
            holder, expires = self._rows.get(execution_id, (None, 0.0))
            return holder if expires >= time.monotonic() else None

    def close(self) -> None:  # noqa: D102
        pass


_NOW = "extract(epoch from clock_timestamp())"
_CREATE_LOCK = 0x666C6F776C6564  # any number the workers agree on: "flowled"


class PostgresLeases:
    """Lease rows in a PostgreSQL table beside the events (created on first use).

    Args:
        store: The PostgreSQL store (its URL, parsed).
        lease_seconds: How long a claim lasts unless renewed.

    Raises:
        StoreError: The server cannot be reached, or the table cannot be created.
    """

    def __init__(self, store: StoreConfig, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        import psycopg  # noqa: PLC0415 - the postgres extra is needed only here
        from psycopg import sql  # noqa: PLC0415

        self.lease_seconds = lease_seconds
        self._display_url = store.display_url
        self._lock = threading.Lock()
        schema = store.env.get("POSTGRES_SCHEMA") or None
        self._table = sql.Identifier(*(name for name in (schema, TABLE) if name))
        try:
            self._connection = connect(store)
        except StoreError as error:
            raise StoreError(error.url, f"leases unavailable: {error.reason}") from error
        self._error = psycopg.Error
        self._sql = sql
        self._create_table()

    def _create_table(self) -> None:
        # Workers starting together would race on CREATE ... IF NOT EXISTS (it is not
        # atomic in PostgreSQL): one takes a transaction-scoped advisory lock first.
        with self._lock, self._connection.transaction():
            for statement in (
                "SELECT pg_advisory_xact_lock(%s)",
                "CREATE TABLE IF NOT EXISTS {t} (execution_id text PRIMARY KEY,"
                " worker text, expires_at double precision NOT NULL DEFAULT 0)",
                "CREATE INDEX IF NOT EXISTS {i} ON {t} (expires_at)",
            ):
                args = (_CREATE_LOCK,) if "advisory" in statement else ()
                try:
                    self._connection.execute(self._query(statement), args)
                except self._error as error:
                    reason = f"leases unavailable: {error}"
                    raise StoreError(self._display_url, reason) from error

    def _query(self, statement: str) -> Any:
        return self._sql.SQL(statement.replace("NOW", _NOW)).format(
            t=self._table, i=self._sql.Identifier(f"{TABLE}_expiry")
        )

    def _run(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement (its own transaction); return its rows."""
        query = self._query(statement)
        with self._lock:
            try:
                cursor = self._connection.execute(query, args)
                return cursor.fetchall() if cursor.description else []
            except self._error as error:
                raise StoreError(self._display_url, f"lease update failed: {error}") from error

    def offer(self, execution_id: str) -> None:  # noqa: D102 - see Leases
        self._run("INSERT INTO {t} (execution_id) VALUES (%s) ON CONFLICT DO NOTHING", execution_id)

    def claim(self, execution_id: str, worker: str) -> Claim | None:  # noqa: D102
        # The row as it was comes from the statement's snapshot; the upsert's condition
        # is checked again on the latest row, so of two racing claims one gets nothing.
        rows = self._run(
            "WITH old AS (SELECT execution_id, worker, expires_at < NOW AS expired"
            " FROM {t} WHERE execution_id = %s),"
            " up AS (INSERT INTO {t} AS l (execution_id, worker, expires_at)"
            " VALUES (%s, %s, NOW + %s) ON CONFLICT (execution_id) DO UPDATE"
            " SET worker = excluded.worker, expires_at = excluded.expires_at"
            " WHERE l.worker IS NULL OR l.worker = excluded.worker OR l.expires_at < NOW"
            " RETURNING l.execution_id)"
            " SELECT up.execution_id, old.worker, old.expired FROM up LEFT JOIN old USING"
            " (execution_id)",
            execution_id,
            execution_id,
            worker,
            self.lease_seconds,
        )
        return _claims(rows, worker)[0] if rows else None

    def claim_available(self, worker: str, limit: int) -> list[Claim]:  # noqa: D102
        rows = self._run(
            "UPDATE {t} AS l SET worker = %s, expires_at = NOW + %s FROM"
            " (SELECT execution_id, worker FROM {t} WHERE expires_at < NOW"
            " ORDER BY worker IS NULL, expires_at LIMIT %s FOR UPDATE SKIP LOCKED) AS old"
            " WHERE l.execution_id = old.execution_id"
            " RETURNING l.execution_id, old.worker, old.worker IS NOT NULL",
            worker,
            self.lease_seconds,
            limit,
        )
        return _claims(rows, worker)

    def renew(self, worker: str, execution_ids: Collection[str]) -> set[str]:  # noqa: D102
        if not execution_ids:
            return set()
        rows = self._run(
            "UPDATE {t} SET expires_at = NOW + %s WHERE worker = %s"
            " AND execution_id = ANY(%s) RETURNING execution_id",
            self.lease_seconds,
            worker,
            list(execution_ids),
        )
        return {row[0] for row in rows}

    def release(self, execution_id: str, worker: str) -> None:  # noqa: D102
        self._run(
            "UPDATE {t} SET worker = NULL, expires_at = 0 WHERE execution_id = %s AND worker = %s",
            execution_id,
            worker,
        )

    def finish(self, execution_id: str, worker: str) -> None:  # noqa: D102
        self._run(
            "DELETE FROM {t} WHERE execution_id = %s AND (worker IS NULL OR worker = %s)",
            execution_id,
            worker,
        )

    def holder(self, execution_id: str) -> str | None:  # noqa: D102
        rows = self._run(
            "SELECT worker FROM {t} WHERE execution_id = %s AND expires_at >= NOW", execution_id
        )
        return rows[0][0] if rows else None

    def close(self) -> None:  # noqa: D102
        with self._lock:
            self._connection.close()


def _claims(rows: list[tuple[Any, ...]], worker: str) -> list[Claim]:
    """Claims from rows of (execution id, previous worker, whether it had expired)."""
    claims = []
    for execution_id, previous, expired in rows:
        if previous in (None, worker):
            claims.append(Claim(execution_id))
        else:
            claims.append(Claim(execution_id, previous, expired=bool(expired)))
    return claims
