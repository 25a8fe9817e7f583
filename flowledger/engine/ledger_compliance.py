"""The ledger's data-protection commands: erasure, legal hold, purge, certificates.

Mixed into :class:`~flowledger.engine.ledger.Ledger`. Each command names who acts and
why; each is recorded as an event on the executions it concerns (see
:mod:`flowledger.domain.data_events`), after the keys it destroys are gone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowledger.domain.data_events import ExecutionPurged
from flowledger.domain.execution import Execution
from flowledger.domain.interventions import accountable
from flowledger.engine.erasure import ErasureReport, annotate, forget_subject
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.retention import PurgeCandidate, purge, purge_candidates, skeleton


class LedgerCompliance:
    """Erasure, legal hold and purge over a ledger application's store."""

    _app: LedgerApplication

    def forget_subject(self, subject_id: str, actor: str, reason: str) -> ErasureReport:
        """Erase a data subject's personal data: destroy its key, record the erasure.

        Afterwards its personal values read as ``[redacted]`` everywhere (state, time
        travel, history, timeline); every history still verifies and replays. Running
        it again records only what a stopped earlier run did not.

        Raises:
            OperatorActionError: ``actor`` or ``reason`` is missing (nothing is done).
        """
        keys = self._app.keys
        now = datetime.now(UTC)
        return forget_subject(self._app, keys, subject_id, actor=actor, reason=reason, at=now)

    def place_legal_hold(self, execution_id: str, actor: str, reason: str) -> None:
        """Place a legal hold: the execution is never purged until it is released.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            OperatorActionError: ``actor`` or ``reason`` is missing, or it is held
                already, or was purged.
        """
        actor, reason = accountable("hold", actor, reason)

        def hold(execution: Execution) -> bool:
            execution.place_legal_hold(actor, reason, datetime.now(UTC))
            return True

        annotate(self._app, execution_id, hold)

    def release_legal_hold(self, execution_id: str, actor: str, reason: str) -> None:
        """Release a legal hold (retention applies again).

        Raises:
            ExecutionNotFoundError: No execution has this id.
            OperatorActionError: ``actor`` or ``reason`` is missing, or no hold is placed.
        """
        actor, reason = accountable("release", actor, reason)

        def release(execution: Execution) -> bool:
            execution.release_legal_hold(actor, reason, datetime.now(UTC))
            return True

        annotate(self._app, execution_id, release)

    def purge_due(self, now: datetime | None = None) -> list[PurgeCandidate]:
        """Return the executions past their retention period (with why any is kept)."""
        return purge_candidates(self._app, now or datetime.now(UTC))

    def purge(
        self, actor: str, reason: str, *, now: datetime | None = None, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        """Purge the payloads of executions past retention, except those under legal hold.

        ``now`` judges retention as of another moment (a test, a catch-up run); the
        purge itself is recorded at the current time.

        Returns:
            One deletion certificate per purged execution (what a dry run would purge).

        Raises:
            OperatorActionError: ``actor`` or ``reason`` is missing.
        """
        at = datetime.now(UTC)
        return purge(self._app, self._app.keys, now or at, actor, reason, at=at, dry_run=dry_run)

    def deletion_certificate(self, execution_id: str) -> dict[str, Any] | None:
        """Return the deletion certificate of a purged execution, or None if not purged.

        Raises:
            ExecutionNotFoundError: No execution has this id.
        """
        for event in reversed(self._app.read_events(execution_id)):
            if isinstance(event, ExecutionPurged):
                return dict(event.certificate)
        return None

    def skeleton(self, execution_id: str) -> list[dict[str, Any]]:
        """Return each event's version, type, time and hashes (what a purge keeps readable).

        Raises:
            ExecutionNotFoundError: No execution has this id.
        """
        return skeleton(self._app.read_events(execution_id))
