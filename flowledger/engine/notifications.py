"""Live status notifications: what ``WorkflowEngine.subscribe`` yields.

A notification is published only after the events it reports are durably saved. A
subscription is catch-up first: it registers for live notifications, then reads what
already happened from the ledger, then follows live, skipping what the catch-up already
gave — so a subscriber that starts late misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowledger.domain.state import HistoryEntry

STATUS_OF_EVENT = {
    "ExecutionStarted": "RUNNING",
    "StepStarted": "STEP_RUNNING",
    "StepCompleted": "STEP_COMPLETED",
    "StepFailed": "STEP_FAILED",
    "StepTimedOut": "STEP_FAILED",
    "StepSkipped": "STEP_SKIPPED",
    "StepRetryScheduled": "STEP_RETRYING",
    "ExecutionPaused": "PAUSED",
    "ExecutionResumed": "RESUMED",
    "ExecutionRetried": "RUNNING",
    "StepSkippedByOperator": "STEP_SKIPPED",
    "ExecutionCompleted": "COMPLETED",
    "ExecutionFailed": "FAILED",
    "ExecutionCancelled": "CANCELLED",
    "RollbackStarted": "ROLLING_BACK",
    "ExecutionRolledBack": "ROLLED_BACK",
    "RollbackFailed": "ROLLBACK_FAILED",
}
"""The notification status of each event that has one; other events (conditions
evaluated, inputs provided, compensation steps…) are in the history and go to
listeners, but are not status changes."""

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "ROLLED_BACK", "ROLLBACK_FAILED"})


@dataclass(frozen=True)
class Notification:
    """A status change of an execution, from one durably saved event.

    Attributes:
        execution_id: The execution it concerns.
        status: ``RUNNING``, ``STEP_RUNNING``, ``STEP_COMPLETED``… (see STATUS_OF_EVENT).
        step_id: The step it concerns, or None.
        data: The event's fields, payloads decoded.
        version: The event's position in the execution's history.
        type: The event's name.
        timestamp: When it happened.
    """

    execution_id: str
    status: str
    step_id: str | None
    data: dict[str, Any]
    version: int
    type: str
    timestamp: datetime

    @property
    def is_final(self) -> bool:
        """True when the execution ended with this notification."""
        return self.status in FINAL_STATUSES


def notifications_of(execution_id: str, entries: Iterable[HistoryEntry]) -> list[Notification]:
    """Return the notifications that history entries give rise to, in order."""
    return [
        Notification(
            execution_id=execution_id,
            status=STATUS_OF_EVENT[entry.type],
            step_id=entry.step_id,
            data=entry.data,
            version=entry.version,
            type=entry.type,
            timestamp=entry.timestamp,
        )
        for entry in entries
        if entry.type in STATUS_OF_EVENT
    ]


CatchUp = Callable[[], Awaitable[Sequence[Notification]]]


@dataclass(eq=False)
class _Subscriber:
    execution_id: str | None
    queue: asyncio.Queue[Notification | None] = field(default_factory=asyncio.Queue)


class NotificationHub:
    """Fans durably saved notifications out to subscribers (one event loop)."""

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    def publish(self, notifications: Iterable[Notification]) -> None:
        """Deliver notifications to every interested subscriber."""
        for notification in notifications:
            for subscriber in self._subscribers:
                if subscriber.execution_id in (None, notification.execution_id):
                    subscriber.queue.put_nowait(notification)

    @property
    def has_subscribers(self) -> bool:
        """True while at least one subscription is open."""
        return bool(self._subscribers)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """End every subscription (the engine is stopping)."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait(None)

    async def subscribe(
        self, execution_id: str | None, from_version: int, catch_up: CatchUp
    ) -> AsyncIterator[Notification]:
        """Yield what happened after ``from_version``, then follow live.

        A subscription to one execution ends after its final notification; one to
        every execution (``execution_id`` None) ends when the hub closes. ``from_version``
        applies per execution.
        """
        subscriber = _Subscriber(execution_id)
        self._subscribers.add(subscriber)
        try:
            seen: dict[str, int] = {}
            past = await catch_up()
            for notification in past:
                if self._is_new(notification, seen, from_version):
                    yield notification
            if execution_id is not None and past and past[-1].is_final:
                # It had ended: nothing more will come (an operator's retry or skip
                # reopens an execution, so only its latest notification tells).
                return
            if self._closed:
                return
            while True:  # close() queues None behind what was published before it
                live = await subscriber.queue.get()
                if live is None:
                    return
                if self._is_new(live, seen, from_version):
                    yield live
                    if execution_id is not None and live.is_final:
                        return
        finally:
            self._subscribers.discard(subscriber)

    @staticmethod
    def _is_new(notification: Notification, seen: dict[str, int], from_version: int) -> bool:
        last = seen.get(notification.execution_id, from_version)
        if notification.version <= last:
            return False
        seen[notification.execution_id] = notification.version
        return True
