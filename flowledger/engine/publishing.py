"""What happens once events are durably saved: listeners, notifications, waiters.

Every save of the engine ends here. History entries (payloads decoded) are built only
when someone receives them, a listener or a subscriber, because this runs after every
step transition; ``wait_for`` callers are woken when an execution becomes terminal or
PAUSED.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution
from flowledger.domain.history import history_entry
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.notifications import (
    CatchUp,
    Notification,
    NotificationHub,
    notifications_of,
)

logger = logging.getLogger(__name__)

Listener = Callable[[HistoryEntry], Any]
"""A listener: called with every history entry once it is durably saved (sync or async)."""


def is_settled(status: ExecutionStatus) -> bool:
    """True when only an outside command can change an execution: terminal or PAUSED."""
    return status.is_terminal or status is ExecutionStatus.PAUSED


class Publisher:
    """Delivers durably saved events to listeners, subscribers and waiters."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._hub = NotificationHub()
        self._waiters: dict[str, list[asyncio.Future[ExecutionState]]] = {}

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback`` with every history entry once it is durably saved."""
        self._listeners.append(callback)

    def reopen(self) -> None:
        """Serve live subscriptions again after :meth:`close` (an engine restarted)."""
        if self._hub.closed:
            self._hub = NotificationHub()

    def close(self) -> None:
        """End every subscription and cancel every waiter (the engine is stopping)."""
        self._hub.close()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()

    def subscribe(
        self, execution_id: str | None, from_version: int, catch_up: CatchUp
    ) -> AsyncIterator[Notification]:
        """Yield what happened after ``from_version``, then follow live."""
        return self._hub.subscribe(execution_id, from_version, catch_up)

    async def publish(self, execution: Execution, events: list[ExecutionEvent]) -> None:
        """Deliver events just saved for ``execution``; wake its waiters if it settled."""
        execution_id = execution.execution_id
        if self._listeners or self._hub.has_subscribers:
            entries = [history_entry(event, execution_id) for event in events]
            for listener in self._listeners:
                for entry in entries:
                    await _call(listener, entry)
            self._hub.publish(notifications_of(execution_id, entries))
        waiters = self._waiters.get(execution_id)
        if waiters and is_settled(execution.status):
            state = execution.state()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(state)

    async def wait(
        self,
        execution_id: str,
        current: Callable[[], Awaitable[ExecutionState]],
        timeout: float | None,
        *,
        poll: float | None = None,
    ) -> ExecutionState:
        """Return the execution's state once it is settled (see :func:`is_settled`).

        The waiter is registered before ``current`` is read, so a change saved in
        between is not missed. With ``poll``, ``current`` is also read every ``poll``
        seconds: on a shared store another engine's changes are never published here.
        """
        if poll is None:
            return await self._wait_once(execution_id, current, timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = poll if deadline is None else max(deadline - loop.time(), 0)
            try:
                return await self._wait_once(execution_id, current, min(remaining, poll))
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    raise

    async def _wait_once(
        self,
        execution_id: str,
        current: Callable[[], Awaitable[ExecutionState]],
        timeout: float | None,
    ) -> ExecutionState:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(waiter)
        try:
            state = await current()
            if is_settled(state.status):
                return state
            return await asyncio.wait_for(waiter, timeout)
        finally:
            waiters = self._waiters.get(execution_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(execution_id, None)


async def _call(listener: Listener, entry: HistoryEntry) -> None:
    try:
        result = listener(entry)
        if inspect.isawaitable(result):
            await result
    except Exception as error:  # a listener never breaks an execution
        logger.warning("listener failed: %s", type(error).__name__)
