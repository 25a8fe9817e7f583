"""Reading a ledger's notification log: every execution, or every one of a kind.

Mixed into :class:`~flowledger.engine.ledger_app.LedgerApplication`. SQLite recorders
cannot subscribe, so the log is read page by page, filtered by event topic where only
one kind of event is wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.utils import get_topic

from flowledger.domain.data_events import PayloadKeysAssigned
from flowledger.domain.events import ExecutionEvent, ExecutionStarted

NOTIFICATION_PAGE = 500
"""How many notifications one read of the notification log asks for."""

STARTED_TOPIC = get_topic(ExecutionStarted)
"""The stored topic of an execution's first event."""

KEYS_TOPIC = get_topic(PayloadKeysAssigned)
"""The stored topic of the event naming the keys that seal an execution's payloads."""


class LedgerLog:
    """The notification-log reads of a ledger application."""

    recorder: ApplicationRecorder
    decode: Callable[..., ExecutionEvent]
    """Decode a stored record into an execution event (the application's)."""

    def started_events(self, after: int = 0) -> Iterator[tuple[int, ExecutionStarted]]:
        """Yield ``(notification id, first event)`` of every execution, oldest first.

        Args:
            after: Only executions recorded after this notification id.

        Raises:
            CorruptRecordError: A first event cannot be read back.
        """
        for notification in self._notifications(after, (STARTED_TOPIC,)):
            event = self.decode(notification)
            assert isinstance(event, ExecutionStarted)
            yield notification.id, event

    def sealed_executions(self) -> Iterator[tuple[str, PayloadKeysAssigned]]:
        """Yield ``(execution id, keys event)`` of every execution whose payloads are sealed.

        One read of the log for that event's topic, and one record per execution found:
        the rest of the store is not read.
        """
        for notification in self._notifications(0, (KEYS_TOPIC,)):
            event = self.decode(notification)
            assert isinstance(event, PayloadKeysAssigned)
            (first,) = self.recorder.select_events(event.originator_id, lte=1)
            started = self.decode(first)
            assert isinstance(started, ExecutionStarted)
            yield started.execution_id, event

    def execution_ids(self, after: int = 0) -> Iterator[str]:
        """Yield the id of every execution, in the order they were recorded.

        Args:
            after: Only executions recorded after this notification id.
        """
        for _, started in self.started_events(after):
            yield started.execution_id

    def aggregate_ids(self) -> list[UUID]:
        """Return the aggregate id of everything in the store, first recorded first.

        Unlike :meth:`execution_ids` this decodes no record, so an execution
        whose first event was damaged or deleted is still found.
        """
        found: dict[UUID, None] = {}
        for notification in self._notifications(0, ()):
            found.setdefault(UUID(str(notification.originator_id)))
        return list(found)

    def _notifications(self, after: int, topics: Sequence[str]) -> Iterator[Notification]:
        start = after + 1
        while True:
            page = self.recorder.select_notifications(start, NOTIFICATION_PAGE, topics=topics)
            yield from page
            if len(page) < NOTIFICATION_PAGE:
                return
            start = page[-1].id + 1
