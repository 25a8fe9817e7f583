"""The engine-wide bound on steps running at once (``max_concurrent_steps``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


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


class RunnerSlots:
    """The slots one runner holds of its engine's pool.

    A runner that found every slot taken queues for one (:meth:`queue`); the slot it
    is given is *held* until its next plan uses it for a start or gives it back.
    Every start or compensation takes a slot (:meth:`take`), given back when its
    action ends or when it is not launched after all (:meth:`release`).

    Args:
        pool: The engine's pool.
        arrived: Called (in the event loop) when a queued-for slot is held.
    """

    def __init__(self, pool: SlotPool, arrived: Callable[[], None]) -> None:
        self._pool = pool
        self._arrived = arrived
        self._held = False
        self._waiter: asyncio.Task[None] | None = None

    @property
    def available(self) -> int:
        """Slots a plan may use now: the free ones, and the one held."""
        return self._pool.free_now + (1 if self._held else 0)

    @property
    def waiting(self) -> bool:
        """True while queued for a slot."""
        return self._waiter is not None

    def take(self) -> None:
        """Take the slot held, or a free one (the plan was sized to :attr:`available`)."""
        if self._held:
            self._held = False
            return
        if not self._pool.try_take():  # pragma: no cover - plans are sized to slots
            msg = "a start was planned without a free slot"
            raise RuntimeError(msg)

    async def take_waiting(self) -> None:
        """Take a slot, waiting for one if need be."""
        await self._pool.take()

    def release(self, count: int = 1) -> None:
        """Give back ``count`` slots taken with :meth:`take`."""
        for _ in range(count):
            self._pool.release()

    def settle(self, *, used_all: bool, want_more: bool) -> None:
        """After a plan: give back a held slot it did not use; queue if it wants more."""
        if self._held and not used_all:
            self.release()  # taken for a start that was not wanted after all
            self._held = False
        if want_more and self._waiter is None:
            self._waiter = asyncio.create_task(self._wait())

    def hold(self) -> None:
        """Hold the slot queued for (the runner got the :meth:`queue` wake-up)."""
        self._waiter = None
        self._held = True

    def close(self) -> None:
        """Stop waiting and give back the slot held."""
        if self._waiter is not None:
            self._waiter.cancel()
        if self._held:
            self.release()
            self._held = False

    async def _wait(self) -> None:
        await self._pool.take()
        self._arrived()
