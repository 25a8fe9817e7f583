"""Audit of stored histories: hash-chain verification and JSON export.

Verification works from the *stored records*, not from loaded aggregates: each record
is decoded on its own, so a record that was edited, made undecodable or deleted in the
store is reported as a problem at its version rather than raised. Only the first break
of each execution's chain is reported: every later link depends on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from flowledger.domain.canonical import json_ready
from flowledger.domain.chain import ChainLink, link_of, verify_chain
from flowledger.domain.events import ExecutionStarted
from flowledger.domain.execution import execution_uuid
from flowledger.domain.history import history_entry
from flowledger.domain.state import HistoryEntry
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.notifications import Notification, notifications_of
from flowledger.errors import CorruptRecordError, ExecutionNotFoundError

EXPORT_FORMAT = "flowledger.export/1"
"""The ``format`` of an export document; a new version changes the suffix."""


@dataclass(frozen=True)
class VerifyProblem:
    """Where and why a stored history does not verify.

    Also readable like a dict (``problem["version"]``), as in the public contract.

    Attributes:
        execution_id: The execution (its aggregate id when its first event is
            unreadable).
        version: The version at which the history first breaks.
        reason: What did not match or could not be read.
    """

    execution_id: str
    version: int
    reason: str

    def __getitem__(self, key: str) -> str | int:
        value: str | int = self.to_dict()[key]
        return value

    def to_dict(self) -> dict[str, str | int]:
        """Return the problem as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class VerifyReport:
    """The result of verifying stored histories.

    Attributes:
        ok: True when every history verified.
        checked: How many stored events were read (the first broken one of each
            history included).
        problems: The first break of each history that did not verify.
        executions: How many histories were verified.
    """

    ok: bool
    checked: int
    problems: tuple[VerifyProblem, ...] = ()
    executions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "executions": self.executions,
            "problems": [problem.to_dict() for problem in self.problems],
        }


def verify_histories(app: LedgerApplication, execution_id: str | None = None) -> VerifyReport:
    """Verify the hash chain of one execution's stored history, or of every one.

    Args:
        app: The ledger application to read.
        execution_id: The execution to verify; None verifies every history in the
            store, found by aggregate id so that one whose first event is damaged or
            deleted is verified too.

    Raises:
        ExecutionNotFoundError: ``execution_id`` names no stored history.
    """
    aggregate_ids = app.aggregate_ids() if execution_id is None else [execution_uuid(execution_id)]
    checked = 0
    problems: list[VerifyProblem] = []
    for aggregate_id in aggregate_ids:
        records = app.stored_records(aggregate_id)
        if not records and execution_id is not None:
            raise ExecutionNotFoundError(execution_id)
        count, problem = _verify_records(app, aggregate_id, records)
        checked += count
        if problem is not None:
            problems.append(problem)
    return VerifyReport(not problems, checked, tuple(problems), len(aggregate_ids))


def _verify_records(
    app: LedgerApplication, aggregate_id: UUID, records: Sequence[StoredEvent]
) -> tuple[int, VerifyProblem | None]:
    """Verify one history: how many records were read, and its first problem."""
    links: list[ChainLink] = []
    unreadable: CorruptRecordError | None = None
    for record in records:
        try:
            links.append(link_of(app.decode(record)))
        except CorruptRecordError as error:
            unreadable = error
            break
    execution_id = _public_id(links, aggregate_id)
    report = verify_chain(links)
    if not report.ok:
        assert report.broken_at is not None
        assert report.reason is not None
        return report.checked, VerifyProblem(execution_id, report.broken_at, report.reason)
    if unreadable is not None:
        version = unreadable.version or report.checked + 1
        reason = f"record cannot be read: {unreadable.reason}"
        return report.checked + 1, VerifyProblem(execution_id, version, reason)
    return report.checked, None


def _public_id(links: Sequence[ChainLink], aggregate_id: UUID) -> str:
    """The execution id the first event records, else the aggregate id."""
    if links and links[0].type_name == ExecutionStarted.__name__:
        recorded = links[0].data.get("execution_id")
        if isinstance(recorded, str):
            return recorded
    return str(aggregate_id)


def history_of(app: LedgerApplication, execution_id: str) -> list[HistoryEntry]:
    """Return an execution's history: each recorded event as an auditor reads it.

    Raises:
        ExecutionNotFoundError: No execution has this id.
        CorruptRecordError: A stored record cannot be read back (see
            :func:`verify_histories`).
    """
    return [history_entry(event, execution_id) for event in app.read_events(execution_id)]


def recorded_notifications(
    app: LedgerApplication, execution_id: str | None = None
) -> list[Notification]:
    """Return the notifications of what one execution (or every one) recorded so far.

    Payloads are as recorded, like live notifications: sealed values stay sealed.
    """
    ids = list(app.execution_ids()) if execution_id is None else [execution_id]
    return [note for key in ids for note in notifications_of(key, history_of(app, key))]


def export_execution(app: LedgerApplication, execution_id: str) -> dict[str, Any]:
    """Return an execution's definition and history as one JSON-ready document.

    The document holds ``format`` (:data:`EXPORT_FORMAT`), ``execution_id``,
    ``workflow_id``, ``definition`` (the canonical definition it ran, as a dict),
    ``definition_hash``, ``events`` (the history entries, timestamps in ISO 8601) and
    ``chain_head`` (the hash of the last event).

    Raises:
        ExecutionNotFoundError: No execution has this id.
        CorruptRecordError: A stored record cannot be read back.
    """
    events = app.read_events(execution_id)
    started = events[0]
    if not isinstance(started, ExecutionStarted):
        reason = f"its first event is {type(started).__name__}, not ExecutionStarted"
        raise CorruptRecordError(execution_id, started.originator_version, reason)
    entries = [history_entry(event, started.execution_id) for event in events]
    return {
        "format": EXPORT_FORMAT,
        "execution_id": started.execution_id,
        "workflow_id": started.workflow_id,
        "definition": json.loads(started.definition),
        "definition_hash": started.definition_hash,
        "events": [entry_json(entry) for entry in entries],
        "chain_head": entries[-1].hash,
    }


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    """Return a history entry as a JSON-ready dict (datetimes in ISO 8601)."""
    return {
        "version": entry.version,
        "type": entry.type,
        "timestamp": entry.timestamp.isoformat(),
        "step_id": entry.step_id,
        "data": json_ready(entry.data),
        "hash": entry.hash,
        "prev_hash": entry.prev_hash,
    }
