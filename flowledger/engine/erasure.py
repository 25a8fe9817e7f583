"""Erasure of a data subject's personal data: destroy its key, record who and why.

The key is destroyed first, then ``SubjectForgotten`` is recorded on every execution
that holds the subject's data. Should the process stop in between, forgetting the
subject again records what is missing; a history never claims an erasure that did not
happen. While an execution holding its data is under legal hold, the erasure is
refused. Finding the executions reads the log of sealed executions' key events, then
loads only the subject's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flowledger.domain.execution import Execution
from flowledger.domain.interventions import accountable
from flowledger.engine.keystore import KeyStore, subject_key_id
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.errors import ConcurrencyConflictError, OperatorActionError

MAX_CONFLICTS = 20
"""Times an annotation is recorded again because the execution moved on meanwhile."""


@dataclass(frozen=True)
class ErasureReport:
    """What forgetting a data subject did.

    Attributes:
        subject_key: The id of the subject's key (a keyed hash, never the subject's id).
        key_destroyed: True when this call destroyed the key (False: it was gone).
        executions: Ids of the executions on which ``SubjectForgotten`` was recorded
            by this call.
    """

    subject_key: str
    key_destroyed: bool
    executions: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """Return the report as a JSON-ready dict."""
        return {
            "subject_key": self.subject_key,
            "key_destroyed": self.key_destroyed,
            "executions": list(self.executions),
        }


def forget_subject(
    app: LedgerApplication,
    keys: KeyStore,
    subject_id: str,
    *,
    actor: str,
    reason: str,
    at: datetime,
) -> ErasureReport:
    """Destroy a data subject's key and record the erasure on its executions.

    Raises:
        OperatorActionError: ``actor`` or ``reason`` is missing, or an execution
            holding the subject's data is under legal hold (nothing is done).
    """
    actor, reason = accountable("forget", actor, reason)
    key_id = subject_key_id(keys, subject_id)
    holding = [
        app.load(execution_id)
        for execution_id, keys_event in app.sealed_executions()
        if keys_event.subject_key == key_id
    ]
    held = [execution.execution_id for execution in holding if execution.under_legal_hold]
    if held:
        # Data needed for legal claims is kept: the hold is released first, knowingly.
        problem = f"executions under legal hold hold its data: {', '.join(held)}"
        raise OperatorActionError("forget", problem)
    destroyed = keys.destroy(key_id)
    recorded = []
    for execution in holding:
        if annotate(app, execution.execution_id, lambda e: _forget(e, actor, reason, at)):
            recorded.append(execution.execution_id)
    return ErasureReport(key_id, destroyed, tuple(recorded))


def _forget(execution: Execution, actor: str, reason: str, at: datetime) -> bool:
    if execution.subject_forgotten:
        return False
    execution.record_forgotten(actor, reason, at)
    return True


def annotate(
    app: LedgerApplication, execution_id: str, command: Callable[[Execution], bool]
) -> bool:
    """Load an execution, apply ``command`` and save; again if it moved on meanwhile.

    ``command`` returns False when there is nothing to record.
    """
    for _ in range(MAX_CONFLICTS):
        execution = app.load(execution_id)
        if not command(execution):
            return False
        try:
            app.save(execution)
        except ConcurrencyConflictError:
            continue
        return True
    raise ConcurrencyConflictError([execution_id])
