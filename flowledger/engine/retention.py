"""Retention: purge payloads past their retention period, keep a verifiable skeleton.

A workflow that declares ``retention`` (``{"days": N}``) has every payload of its
executions sealed with the execution's own key. Once an execution has been ended for
N days, :func:`purge` destroys that key and records ``ExecutionPurged`` with a
*deletion certificate*: what was destroyed, when, by whom and why, and the chain head
and a digest of the skeleton (each event's version, type, time and hash) at that
moment. The events stay: the history still verifies, replays and exports, with every
payload redacted. An execution under legal hold is never purged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowledger.domain.canonical import canonical_json, sha256_hex
from flowledger.domain.event_catalogue import TERMINAL_EVENTS
from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution
from flowledger.domain.interventions import accountable
from flowledger.engine.erasure import annotate
from flowledger.engine.keystore import KeyStore
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.planning import definition_of

CERTIFICATE_FORMAT = "flowledger.deletion-certificate/1"
"""The ``format`` of a deletion certificate."""


@dataclass(frozen=True)
class PurgeCandidate:
    """An execution past its retention period, and whether it may be purged.

    Attributes:
        execution_id: The execution.
        ended_at: When it ended (its last terminal event).
        due_at: When its retention period ended.
        refusal: Why it is not purged (legal hold...), or None.
    """

    execution_id: str
    ended_at: datetime
    due_at: datetime
    refusal: str | None


def skeleton(events: Sequence[ExecutionEvent]) -> list[dict[str, Any]]:
    """Return what a purge keeps readable of each event: version, type, time, hashes."""
    return [
        {
            "version": event.originator_version,
            "type": type(event).__name__,
            "timestamp": event.timestamp.isoformat(),
            "hash": event.hash,
            "prev_hash": event.prev_hash,
        }
        for event in events
    ]


def skeleton_digest(events: Sequence[ExecutionEvent]) -> str:
    """Return the SHA-256 of the skeleton's canonical JSON (the certificate holds it)."""
    return sha256_hex(canonical_json(skeleton(events)))


def purge_candidates(app: LedgerApplication, now: datetime) -> list[PurgeCandidate]:
    """Return the executions whose retention period is over and that are not purged."""
    found = []
    # Only retained executions have a key of their own: the others are not read.
    for execution_id, keys_event in app.sealed_executions():
        if keys_event.execution_key is None:
            continue
        execution = app.load(execution_id)
        retention = definition_of(execution).retention
        if retention is None or execution.purged or not execution.is_terminal:
            continue
        ended_at = _ended_at(app.read_events(execution_id))
        due_at = ended_at + timedelta(days=retention.days)
        if due_at <= now:
            found.append(PurgeCandidate(execution_id, ended_at, due_at, execution.purge_refusal()))
    return found


def purge(
    app: LedgerApplication,
    keys: KeyStore,
    now: datetime,
    actor: str,
    reason: str,
    *,
    at: datetime,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Purge every execution past its retention period that is not under legal hold.

    For each: destroy its key, then record ``ExecutionPurged`` with its certificate.
    A dry run destroys and records nothing, and returns the certificates it would.
    ``now`` is the moment retention is judged at (``judged_as_of`` in the
    certificate); ``at`` is when the purge happens (the event's time, ``purged_at``).

    Returns:
        The deletion certificates, one per purged execution.

    Raises:
        OperatorActionError: ``actor`` or ``reason`` is missing.
    """
    actor, reason = accountable("purge", actor, reason)
    certificates = []
    for candidate in purge_candidates(app, now):
        if candidate.refusal is not None:
            continue
        events = app.read_events(candidate.execution_id)
        execution = app.load(candidate.execution_id)
        certificate = _certificate(
            execution, events, candidate, now=now, at=at, actor=actor, reason=reason
        )
        if dry_run:
            certificates.append(certificate)
            continue
        keys.destroy(str(execution.payload_keys["execution"]))

        def record(loaded: Execution, certified: dict[str, Any] = certificate) -> bool:
            if loaded.purged:
                return False
            loaded.record_purge(actor, reason, certified, at)
            return True

        if annotate(app, candidate.execution_id, record):
            certificates.append(certificate)
    return certificates


def _certificate(
    execution: Execution,
    events: Sequence[ExecutionEvent],
    candidate: PurgeCandidate,
    *,
    now: datetime,
    at: datetime,
    actor: str,
    reason: str,
) -> dict[str, Any]:
    retention = definition_of(execution).retention
    assert retention is not None  # a candidate's workflow declares it
    return {
        "format": CERTIFICATE_FORMAT,
        "execution_id": execution.execution_id,
        "workflow_id": execution.state().workflow_id,
        "definition_hash": execution.definition_hash,
        "ended_at": candidate.ended_at.isoformat(),
        "retention_days": retention.days,
        "due_at": candidate.due_at.isoformat(),
        "judged_as_of": now.isoformat(),
        "purged_at": at.isoformat(),
        "destroyed_key": execution.payload_keys["execution"],
        "events": len(events),
        "chain_head": events[-1].hash,
        "skeleton_sha256": skeleton_digest(events),
        "actor": actor,
        "reason": reason,
    }


def _ended_at(events: Sequence[ExecutionEvent]) -> datetime:
    """When the execution last ended (an operator's retry may have reopened it)."""
    return next(e.timestamp for e in reversed(events) if type(e).__name__ in TERMINAL_EVENTS)
