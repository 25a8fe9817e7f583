"""Lease commands of the ``Execution`` aggregate: which worker drives it.

On a store several engines share, the worker holding an execution's lease records it
(see :mod:`flowledger.domain.lease_events`). These commands change no status and are
allowed in any non-terminal state.
"""

from __future__ import annotations

from datetime import datetime

from flowledger.domain import lease_events
from flowledger.domain.execution_state import NON_TERMINAL, ExecutionRecord


class Leasing(ExecutionRecord):
    """Claim, take over and release an execution."""

    def claim(self, worker: str, at: datetime) -> None:
        """Record that ``worker`` drives the execution from now on (it holds the lease).

        A worker that stopped without handing the execution back is named as the
        previous one.
        """
        self._require("claim", at, NON_TERMINAL)
        self._append(lease_events.ExecutionClaimed, at, worker=worker, previous_worker=self.worker)

    def take_over(self, worker: str, previous_worker: str, at: datetime) -> None:
        """Record that ``worker`` took over from ``previous_worker``, whose lease expired."""
        self._require("take_over", at, NON_TERMINAL)
        self._append(
            lease_events.ExecutionTakenOver, at, worker=worker, previous_worker=previous_worker
        )

    def release(self, worker: str, reason: str, at: datetime) -> None:
        """Record that ``worker`` handed the execution back (nothing of it in flight)."""
        self._require("release", at, NON_TERMINAL)
        self._append(lease_events.ExecutionReleased, at, worker=worker, reason=reason)
