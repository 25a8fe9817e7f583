"""One engine's side of sharing a store: claiming executions, renewing, handing back.

An engine on a shared store (PostgreSQL) is a *worker*. Its :class:`LeaseKeeper` polls
the lease rows for executions that are free or whose lease expired, claims as many as it
has room for, and adopts each: it records ``ExecutionClaimed`` (or
``ExecutionTakenOver`` when the previous worker's lease ran out) on the execution and
starts a runner. It renews all of the worker's leases in one statement every third of
the lease time, and tells the engine which executions it no longer holds, so their
runners stop. Optimistic concurrency on the execution's history is what finally decides
a race: a runner whose execution was taken over finds its next save refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from flowledger.domain.execution import Execution
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.leases import Claim, Leases
from flowledger.engine.store_calls import StoreCalls
from flowledger.errors import ConcurrencyConflictError, ExecutionNotFoundError, StoreError

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.1
"""Seconds between two looks for free or expired executions."""

MAX_CLAIM_CONFLICTS = 5
"""Saves of a claim that another engine may get in first before the lease is handed back."""


@dataclass
class EngineHooks:
    """What the keeper needs of its engine."""

    load: Callable[[str], Awaitable[Execution]]
    save: Callable[[Execution], Awaitable[object]]
    spawn: Callable[[Execution], object]
    running: Callable[[], set[str]]
    lock: Callable[[str], asyncio.Lock]
    lost: Callable[[str], None]
    clock: Callable[[], datetime]


class LeaseKeeper:
    """Claims, renews and hands back the leases of one worker.

    Args:
        leases: The store's lease rows.
        worker: This worker's name (unique among the workers sharing the store).
        calls: Where blocking store calls run.
        capacity: Most executions this worker drives at once.
        poll_interval: Seconds between two looks for work.
    """

    def __init__(
        self,
        leases: Leases,
        worker: str,
        calls: StoreCalls,
        *,
        capacity: int,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.leases = leases
        self.worker = worker
        self.capacity = capacity
        self.poll_interval = poll_interval
        self._calls = calls
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    # -- the rows of single executions ----------------------------------------------------

    async def claim(self, execution_id: str) -> Claim | None:
        """Claim one execution's row (None: another worker's lease covers it)."""
        return await self._calls.run(self.leases.claim, execution_id, self.worker)

    async def offer(self, execution_id: str) -> None:
        """Leave the execution to whichever worker claims it first."""
        await self._calls.run(self.leases.offer, execution_id)

    async def finish(self, execution_id: str, load: Callable[[str], Awaitable[Execution]]) -> None:
        """Drop the row of an execution that rests (terminal, or paused).

        Then look again: a resume recorded meanwhile found the row still held and left
        the execution to its holder, so the execution is offered to every worker.
        """
        await self._calls.run(self.leases.finish, execution_id, self.worker)
        try:
            execution = await load(execution_id)
        except ExecutionNotFoundError:
            return
        if not rests(execution):
            await self.offer(execution_id)
            self.wake()

    async def release(self, execution_id: str) -> None:
        """Hand the row back, free at once for any worker."""
        await self._calls.run(self.leases.release, execution_id, self.worker)

    # -- adopting a claimed execution -----------------------------------------------------

    async def adopt(self, claim: Claim, hooks: EngineHooks) -> bool:
        """Record the claim on the execution and start driving it; False if it rests.

        An execution that is terminal, or paused with nothing in flight, has its row
        dropped instead; one that vanished too. If other engines keep recording events
        first, the lease is handed back.
        """
        execution_id = claim.execution_id
        async with hooks.lock(execution_id):
            if execution_id in hooks.running():
                return True
            for _ in range(MAX_CLAIM_CONFLICTS):
                try:
                    execution = await hooks.load(execution_id)
                except ExecutionNotFoundError:
                    await self._calls.run(self.leases.finish, execution_id, self.worker)
                    return False
                if rests(execution):
                    await self.finish(execution_id, hooks.load)
                    return False
                if execution.worker != self.worker:
                    self._record_claim(execution, claim, hooks.clock())
                    try:
                        await hooks.save(execution)
                    except ConcurrencyConflictError:
                        continue
                hooks.spawn(execution)
                return True
        await self.release(execution_id)
        return False

    def _record_claim(self, execution: Execution, claim: Claim, at: datetime) -> None:
        if claim.expired and claim.previous_worker is not None:
            execution.take_over(self.worker, claim.previous_worker, at)
        else:
            execution.claim(self.worker, at)

    # -- the loop -------------------------------------------------------------------------

    def start(self, hooks: EngineHooks, *, claiming: bool) -> None:
        """Start renewing this worker's leases (and, if ``claiming``, looking for work)."""
        if self._task is None:
            loop_body = self._loop(hooks, claiming=claiming)
            self._task = asyncio.create_task(loop_body, name=f"leases of {self.worker}")

    def wake(self) -> None:
        """Look for work now (a runner finished, or work was offered)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop renewing and claiming (the leases held stay until handed back or expired).

        The loop ends between two rounds, so no claimed row is left half adopted; if a
        round hangs on an unreachable store, it is cancelled after one lease time.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.leases.lease_seconds)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            self._stopping = False

    async def _loop(self, hooks: EngineHooks, *, claiming: bool) -> None:
        renew_every = self.leases.lease_seconds / 3
        next_renewal = 0.0
        while True:
            try:
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + renew_every
                    await self._renew(hooks)
                if claiming:
                    await self._claim_available(hooks)
            except StoreError as error:  # the store is unreachable: try again later
                logger.warning("worker %s: %s", self.worker, error)
            if self._stopping:
                return
            self._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancellation that arrives as the event is set, and the loop never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def _renew(self, hooks: EngineHooks) -> None:
        running = hooks.running()
        held = await self._calls.run(self.leases.renew, self.worker, running)
        for execution_id in running - held:
            logger.warning("worker %s lost the lease of %s", self.worker, execution_id)
            hooks.lost(execution_id)

    async def _claim_available(self, hooks: EngineHooks) -> None:
        room = self.capacity - len(hooks.running())
        if room <= 0:
            return
        claims = await self._calls.run(self.leases.claim_available, self.worker, room)
        for claim in claims:
            if self._stopping:  # hand the rest back rather than start driving them
                await self.release(claim.execution_id)
            else:
                await self.adopt(claim, hooks)


def rests(execution: Execution) -> bool:
    """Whether nothing is left to drive: terminal, or paused with nothing in flight."""
    if execution.is_terminal:
        return True
    return execution.status is ExecutionStatus.PAUSED and not in_flight(execution)


def in_flight(execution: Execution) -> bool:
    """Whether a step of the execution is recorded as running (or compensating)."""
    busy = (StepStatus.RUNNING, StepStatus.COMPENSATING)
    return any(step.status in busy for step in execution.state().steps.values())
