"""The engine-wide bound on steps running at once (``max_concurrent_steps``)."""

from __future__ import annotations

import asyncio
from collections import deque


class SlotPool:
    """A counting bound with a non-blocking take and first-come, first-served waiting.

    A runner takes a slot before it records ``StepStarted``, so the steps recorded as
    running never exceed the bound; a released slot goes to the longest waiter.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            msg = f"max_concurrent_steps must be at least 1, got {size}"
            raise ValueError(msg)
        self.size = size
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken now."""
        return self.size - self._free

    @property
    def free_now(self) -> int:
        """Slots that :meth:`try_take` would grant now (none while others wait)."""
        return 0 if self._waiters else self._free

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is waiting for one."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot and take it."""
        if self.try_take():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as the waiter was cancelled: pass it on
            elif waiter in self._waiters:  # release() drops cancelled waiters itself
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, to the longest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
