"""Blocking store calls run in threads, so that closing the store can wait for them.

A cancelled ``asyncio.to_thread`` call leaves its thread running: an engine stopped while
it reads an execution (say, a runner reloading after a failed save) would otherwise close
the store under a query still in progress, and SQLite may then crash the process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StoreCalls:
    """Runs blocking store calls in worker threads and tracks those in progress."""

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._running = 0
        self._closed = False

    async def run(self, function: Callable[..., T], /, *args: Any) -> T:
        """Run ``function(*args)`` in a worker thread and return its result.

        Raises:
            RuntimeError: The store is closed (the call did not run).
        """
        return await asyncio.to_thread(self._counted, function, *args)

    def close(self) -> None:
        """Refuse new calls and wait until the calls in progress have returned."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._running == 0)

    def _counted(self, function: Callable[..., T], *args: Any) -> T:
        with self._idle:
            if self._closed:
                msg = "the store is closed"
                raise RuntimeError(msg)
            self._running += 1
        try:
            return function(*args)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()
