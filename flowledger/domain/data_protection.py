"""Commands and queries of the ``Execution`` aggregate about the data it holds.

Which keys seal its payloads, erasure of its data subject's personal data, legal hold
and purge (see :mod:`flowledger.domain.data_events`). Erasure and purge are recorded
here; destroying the keys is the engine's part, done before they are recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowledger.domain.data_events import (
    ExecutionPurged,
    LegalHoldPlaced,
    LegalHoldReleased,
    PayloadKeysAssigned,
    SubjectForgotten,
)
from flowledger.domain.execution_state import TERMINAL, ExecutionRecord, aware
from flowledger.domain.interventions import accountable
from flowledger.errors import InvalidTransitionError, OperatorActionError


class DataProtection(ExecutionRecord):
    """Keys, erasure, legal hold and purge of one execution."""

    @property
    def payload_keys(self) -> dict[str, str | None]:
        """The ids of the keys sealing its payloads: ``subject`` and ``execution``."""
        keys: dict[str, str | None] = self.__dict__.get("_payload_keys") or {}
        return {"subject": keys.get("subject"), "execution": keys.get("execution")}

    @property
    def under_legal_hold(self) -> bool:
        """True while a legal hold is placed."""
        return bool(self.__dict__.get("_legal_hold"))

    @property
    def purged(self) -> bool:
        """True once its payloads were purged."""
        return bool(self.__dict__.get("_purged"))

    @property
    def subject_forgotten(self) -> bool:
        """True once its data subject's personal data was erased."""
        return bool(self.__dict__.get("_subject_forgotten"))

    def assign_keys(self, subject_key: str | None, execution_key: str | None, at: datetime) -> None:
        """Record the keys sealing the payloads; only as the event after the start.

        Raises:
            InvalidTransitionError: Events were recorded after the start already.
        """
        aware(at)
        if self.version != 1:
            state = f"{self._status} (version {self.version})"
            raise InvalidTransitionError("execution", state, "assign_keys", self._execution_id)
        self._append(PayloadKeysAssigned, at, subject_key=subject_key, execution_key=execution_key)

    def record_forgotten(self, actor: str, reason: str, at: datetime) -> None:
        """Record that the data subject's key was destroyed (once).

        Raises:
            OperatorActionError: No actor or reason; the execution holds no personal
                data, or it was forgotten already.
        """
        actor, reason = accountable("forget", actor, reason)
        aware(at)
        subject_key = self.payload_keys["subject"]
        if subject_key is None or self.subject_forgotten:
            problem = "already forgotten" if subject_key else "it holds no personal data"
            raise OperatorActionError("forget", f"execution {self._execution_id}: {problem}")
        self._append(SubjectForgotten, at, subject_key=subject_key, actor=actor, reason=reason)

    def place_legal_hold(self, actor: str, reason: str, at: datetime) -> None:
        """Place a legal hold: the execution is not purged until it is released.

        Raises:
            OperatorActionError: No actor or reason, a hold is placed already, or the
                execution was purged.
        """
        actor, reason = accountable("hold", actor, reason)
        aware(at)
        if self.under_legal_hold or self.purged:
            problem = "it was purged" if self.purged else "it is under legal hold already"
            raise OperatorActionError("hold", f"execution {self._execution_id}: {problem}")
        self._append(LegalHoldPlaced, at, actor=actor, reason=reason)

    def release_legal_hold(self, actor: str, reason: str, at: datetime) -> None:
        """Release the legal hold.

        Raises:
            OperatorActionError: No actor or reason, or no hold is placed.
        """
        actor, reason = accountable("release", actor, reason)
        aware(at)
        if not self.under_legal_hold:
            problem = f"execution {self._execution_id} is not under legal hold"
            raise OperatorActionError("release", problem)
        self._append(LegalHoldReleased, at, actor=actor, reason=reason)

    def record_purge(
        self, actor: str, reason: str, certificate: Mapping[str, Any], at: datetime
    ) -> None:
        """Record that the payloads were purged (the execution key was destroyed).

        Raises:
            OperatorActionError: No actor or reason; the execution has not ended, is
                under legal hold, has no execution key, or was purged already.
        """
        actor, reason = accountable("purge", actor, reason)
        aware(at)
        problem = self.purge_refusal()
        if problem is not None:
            raise OperatorActionError("purge", f"execution {self._execution_id}: {problem}")
        self._append(ExecutionPurged, at, actor=actor, reason=reason, certificate=dict(certificate))

    def purge_refusal(self) -> str | None:
        """Say why the payloads may not be purged now, or return None if they may."""
        if self._status not in TERMINAL:
            return f"it has not ended ({self._status})"
        if self.under_legal_hold:
            return "it is under legal hold"
        if self.payload_keys["execution"] is None:
            return "its workflow declares no retention (its payloads have no key of their own)"
        if self.purged:
            return "it was purged already"
        return None
