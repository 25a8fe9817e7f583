"""Operators' commands (cancel, pause, resume): where each one is applied, and who drives on.

A command goes to the runner of the execution when this engine has one running it.
Otherwise it is applied to the execution as stored (loaded, commanded and saved, again
if another engine records events first), and then the execution is driven on: here, by
a new runner; on a shared store, only if this engine can claim its lease (otherwise the
worker that holds it acts on the command). An engine that may not take executions over
(``recover=False``, for a cancel or pause) records the command only while steps are in
flight, so it never interrupts steps another engine is running.
"""

from __future__ import annotations

import asyncio

from flowledger.domain.execution import Execution
from flowledger.domain.state import ExecutionState
from flowledger.engine.leasing import EngineHooks, LeaseKeeper, in_flight, rests
from flowledger.engine.runner_pool import RunnerPool
from flowledger.engine.runner_services import Command
from flowledger.errors import ConcurrencyConflictError

MAX_COMMAND_CONFLICTS = 20
"""Times a command is applied again because another engine recorded events first."""


class CommandDesk:
    """Applies one engine's operator commands."""

    def __init__(
        self, *, runners: RunnerPool, keeper: LeaseKeeper | None, hooks: EngineHooks
    ) -> None:
        self._runners = runners
        self._keeper = keeper
        self._hooks = hooks

    async def run(self, execution_id: str, command: Command, *, take_over: bool) -> ExecutionState:
        """Apply ``command`` and drive the execution on; return its state afterwards.

        Args:
            execution_id: The execution.
            command: The aggregate commands to apply.
            take_over: Whether this engine may drive an execution with steps in flight
                that no runner of its own is running.
        """
        async with self._runners.lock(execution_id):
            # Looked up under the lock: the command that held it may have spawned a
            # runner, and a save beside a running runner conflicts with its saves.
            if await self._runners.hand_over(execution_id, command):
                return (await self._hooks.load(execution_id)).state()
            execution = await self._apply(execution_id, command)
            if execution.is_terminal or execution_id in self._runners:
                return execution.state()
            task: asyncio.Future[None] | None = None
            if self._keeper is None:
                if not take_over and in_flight(execution):
                    # Another engine may be running these steps: record the command
                    # only, never interrupt them. The engine that runs it acts on it.
                    return execution.state()
                task = self._runners.spawn(execution)
        if self._keeper is not None:
            task = await self._drive_shared(self._keeper, execution, take_over)
        if task is not None and execution.cancel_requested:
            # Nothing was in flight (no runner was running it): the cancel completes now.
            await asyncio.shield(task)
        return (await self._hooks.load(execution_id)).state()

    async def _apply(self, execution_id: str, command: Command) -> Execution:
        """Load, command and save, again if another engine records events first."""
        for _ in range(MAX_COMMAND_CONFLICTS):
            execution = await self._hooks.load(execution_id)
            command(execution, self._hooks.clock())
            try:
                await self._hooks.save(execution)
            except ConcurrencyConflictError:
                continue
            return execution
        raise ConcurrencyConflictError([execution_id])

    async def _drive_shared(
        self, keeper: LeaseKeeper, execution: Execution, take_over: bool
    ) -> asyncio.Future[None] | None:
        """On a shared store: drive the commanded execution here if its lease is free.

        Returns the runner's task, if one started here.
        """
        execution_id = execution.execution_id
        if rests(execution):
            return None
        if not take_over and in_flight(execution):
            await keeper.offer(execution_id)
            return None
        claim = await keeper.claim(execution_id)
        if claim is None or not await keeper.adopt(claim, self._hooks):
            return None  # another worker drives it, and acts on the command
        return self._runners.task_of(execution_id)
