"""Lease events: which worker drives an execution, on a store several engines share.

They change no status and are allowed in any non-terminal state. Kept apart from
:mod:`flowledger.domain.events` (the same permanence applies: the store records each
class by its ``module:Class`` topic).
"""

from __future__ import annotations

from dataclasses import dataclass

from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution_state import ExecutionRecord


@dataclass(frozen=True)
class ExecutionClaimed(ExecutionEvent):
    """A worker claimed the execution's lease: it drives the execution from here on.

    Attributes:
        worker: The worker that claimed it.
        previous_worker: The worker that drove it before and stopped without handing
            it back (its in-flight steps are interrupted), or None.
    """

    worker: str
    previous_worker: str | None

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._worker = self.worker


@dataclass(frozen=True)
class ExecutionTakenOver(ExecutionEvent):
    """The lease of ``previous_worker`` expired unrenewed, and ``worker`` took over.

    The previous worker crashed, hung or lost the store; from here on its saves are
    refused (the execution's version moved on), and its in-flight steps run again.
    """

    worker: str
    previous_worker: str

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._worker = self.worker


@dataclass(frozen=True)
class ExecutionReleased(ExecutionEvent):
    """The driving worker handed the execution back, with nothing of it in flight."""

    worker: str
    reason: str

    def _evolve(self, aggregate: ExecutionRecord) -> None:
        aggregate._worker = None
