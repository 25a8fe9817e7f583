"""Data-protection events: keys of sealed payloads, erasure, legal hold, purge.

None of them changes the execution's status, and all but the first may be recorded
after it ended: they annotate its history for auditors. Kept apart from
:mod:`flowledger.domain.events` (the same permanence applies: the store records each
class by its ``module:Class`` topic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution_state import ExecutionRecord


@dataclass(frozen=True)
class PayloadKeysAssigned(ExecutionEvent):
    """The keys that seal this execution's payloads (recorded right after it started).

    Attributes:
        subject_key: Id of the data subject's key (personal data), or None.
        execution_key: Id of the execution's own key (every payload, for retention),
            or None.
    """

    subject_key: str | None
    execution_key: str | None

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate.__dict__["_payload_keys"] = {
            "subject": self.subject_key,
            "execution": self.execution_key,
        }


@dataclass(frozen=True)
class SubjectForgotten(ExecutionEvent):
    """The data subject's key was destroyed: its personal data here reads as redacted.

    Attributes:
        subject_key: Id of the destroyed key.
        actor: Who asked for the erasure.
        reason: Why (for example the request's reference).
    """

    subject_key: str
    actor: str
    reason: str

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate.__dict__["_subject_forgotten"] = True


@dataclass(frozen=True)
class LegalHoldPlaced(ExecutionEvent):
    """The execution is under legal hold: it is never purged until the hold is released."""

    actor: str
    reason: str

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate.__dict__["_legal_hold"] = True


@dataclass(frozen=True)
class LegalHoldReleased(ExecutionEvent):
    """The legal hold was released: retention applies again."""

    actor: str
    reason: str

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate.__dict__["_legal_hold"] = False


@dataclass(frozen=True)
class ExecutionPurged(ExecutionEvent):
    """The execution's payloads were destroyed after its retention period.

    Its key was destroyed, so every payload reads as redacted; the events themselves
    (types, times, hashes) remain and verify.

    Attributes:
        actor: Who purged it.
        reason: Why (for example the retention rule).
        certificate: The deletion certificate (see ``flowledger.engine.retention``).
    """

    actor: str
    reason: str
    certificate: dict[str, Any]

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate.__dict__["_purged"] = True
