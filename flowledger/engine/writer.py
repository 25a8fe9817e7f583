"""Group commit: the pending events of many executions saved in shared transactions.

A durable step needs at least one committed write, and a SQLite commit costs an fsync;
saving the events of concurrent executions together is what lets throughput approach
the store's limit (DESIGN.md, "Performance model"). One dedicated thread does every
write, so the event loop never blocks on the store and there is one writer at a time.

Each request's events are collected from its aggregate in the caller's thread, before
anything is written, so a batch that fails can be retried request by request: one
execution's conflict never loses another's events. A request whose save fails raises in
its caller, whose in-memory aggregate is then ahead of the store and must be reloaded.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast

from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution

logger = logging.getLogger(__name__)

MAX_BATCH = 512
"""Most requests saved in one transaction."""


class EventStore(Protocol):
    """What the writer needs of the ledger application."""

    def save_events(self, events: Sequence[ExecutionEvent]) -> None:
        """Record collected events in one transaction."""

    def snapshot_of(self, execution: Execution) -> Any:
        """Take a snapshot of ``execution`` now, safe to record after it moves on."""

    def record_snapshot(self, snapshot: Any) -> None:
        """Record a snapshot taken with :meth:`snapshot_of`."""


@dataclass
class _Request:
    execution: Execution
    events: list[ExecutionEvent]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[ExecutionEvent]] = field(repr=False)


_STOP = object()


class LedgerWriter:
    """Saves executions' pending events from one thread, grouping concurrent saves.

    Args:
        store: The ledger application (see :class:`EventStore`).
        snapshot_interval: Snapshot an execution each time its version crosses a
            multiple of this (None or 0: never).
    """

    def __init__(self, store: EventStore, snapshot_interval: int | None = None) -> None:
        self._store = store
        self._interval = snapshot_interval or 0
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        """Transactions committed so far (for measurements)."""

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flowledger-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what was asked for, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def save(self, execution: Execution) -> list[ExecutionEvent]:
        """Durably save ``execution``'s pending events; return them once committed.

        If the caller is cancelled while waiting, the events may still be committed: a
        cancelled save leaves the in-memory aggregate to be reloaded, like a failed one.

        Raises:
            RuntimeError: The writer is not running.
            Exception: Whatever the store raised (a conflict, an I/O error); nothing of
                this execution's events was saved, and its aggregate must be reloaded.
        """
        if self._thread is None:
            msg = "the ledger writer is not running"
            raise RuntimeError(msg)
        events = cast(list[ExecutionEvent], list(execution.collect_events()))
        if not events:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(execution, events, loop, loop.create_future())
        self._queue.put(request)
        return await request.future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._write([item for item in batch if isinstance(item, _Request)])
            if stopping:
                return

    def _write(self, batch: Sequence[_Request]) -> None:
        try:
            self._store.save_events([event for request in batch for event in request.events])
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            # Retry one by one, so only the request at fault fails.
            for request in batch:
                self._write([request])
            return
        self.batches += 1
        # Snapshots are taken (copied) before the callers move on, and encoded and
        # stored after they were released: a snapshot stays off the critical path.
        snapshots = [(request, self._take_snapshot_if_due(request)) for request in batch]
        for request in batch:
            _settle(request, events=request.events)
        for request, snapshot in snapshots:
            if snapshot is not None:
                self._guarded(request, partial(self._store.record_snapshot, snapshot))

    def _take_snapshot_if_due(self, request: _Request) -> Any:
        if not self._interval:
            return None
        first, last = request.events[0].originator_version, request.events[-1].originator_version
        if last // self._interval == (first - 1) // self._interval:
            return None
        return self._guarded(request, lambda: self._store.snapshot_of(request.execution))

    @staticmethod
    def _guarded(request: _Request, snapshot_work: Callable[[], Any]) -> Any:
        try:
            return snapshot_work()
        except Exception as error:  # the events are committed; a snapshot is an optimisation
            logger.warning(
                "snapshot of execution %s at version %s failed: %s",
                request.execution.execution_id,
                request.events[-1].originator_version,
                type(error).__name__,
            )
            return None


def _settle(
    request: _Request,
    events: list[ExecutionEvent] | None = None,
    error: BaseException | None = None,
) -> None:
    def resolve() -> None:
        if request.future.done():  # the caller was cancelled meanwhile
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(events or [])

    try:
        request.loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the caller's loop has closed; nobody is waiting
        return
