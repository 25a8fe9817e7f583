"""The runners of one engine: one per execution it drives, each in a task of its own.

The pool spawns a runner for an execution, hands operators' commands to the runner of
an execution when there is one, and, on a shared store, settles the execution's lease
when its runner ends: the row is dropped when the execution rests and handed back
otherwise. A runner whose lease another worker took is stopped (``lost``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from flowledger.domain.execution import Execution
from flowledger.engine.leasing import LeaseKeeper, rests
from flowledger.engine.runner import ExecutionRunner
from flowledger.engine.runner_services import Command, EngineServices, LeaseLost

logger = logging.getLogger("flowledger.engine.engine")


class RunnerPool:
    """Spawns, tracks and stops the runners of one engine.

    Args:
        services: Makes what a new runner needs of its engine.
        load: Loads an execution from the store.
        keeper: The engine's lease keeper on a shared store (None otherwise).
    """

    def __init__(
        self,
        services: Callable[[], EngineServices],
        load: Callable[[str], Awaitable[Execution]],
        keeper: LeaseKeeper | None,
    ) -> None:
        self._services = services
        self._load = load
        self._keeper = keeper
        self._runners: dict[str, ExecutionRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._all_tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._runners

    def __len__(self) -> int:
        return len(self._runners)

    def tasks(self) -> set[asyncio.Task[None]]:
        """The tasks of every runner, including those still settling their lease."""
        return set(self._all_tasks)

    def running(self) -> set[str]:
        """The executions a runner of this pool is driving."""
        return set(self._runners)

    def lock(self, execution_id: str) -> asyncio.Lock:
        """The lock that orders commands on one execution in this engine."""
        return self._locks.setdefault(execution_id, asyncio.Lock())

    def task_of(self, execution_id: str) -> asyncio.Task[None] | None:
        """The task of the runner driving the execution, if any."""
        return self._tasks.get(execution_id)

    def spawn(self, execution: Execution) -> asyncio.Task[None]:
        """Start a runner driving ``execution`` (as loaded or just saved)."""
        runner = ExecutionRunner(self._services(), execution)
        execution_id = execution.execution_id
        self._runners[execution_id] = runner
        task = asyncio.create_task(self._drive(runner), name=f"execution {execution_id}")
        self._all_tasks.add(task)
        self._tasks[execution_id] = task
        task.add_done_callback(self._all_tasks.discard)
        task.add_done_callback(lambda done: self._forget(execution_id, done))
        return task

    async def hand_over(self, execution_id: str, command: Command) -> bool:
        """Run ``command`` through the execution's runner, if one is running it."""
        runner = self._runners.get(execution_id)
        if runner is None or runner.closed:
            return False
        await runner.submit(command)
        return True

    def lost(self, execution_id: str) -> None:
        """Stop driving an execution whose lease another worker holds now."""
        task = self._tasks.get(execution_id)
        if task is not None:
            task.cancel()

    async def drain(self) -> None:
        """Let each runner record its steps in flight and stop, starting nothing new."""
        for runner in list(self._runners.values()):
            runner.drain()
        await asyncio.gather(*list(self._all_tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every runner (steps in flight stay recorded as running)."""
        tasks = list(self._all_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, execution_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(execution_id) is task:
            del self._tasks[execution_id]

    async def _drive(self, runner: ExecutionRunner) -> None:
        lost = False
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except LeaseLost as error:
            lost = True
            logger.info("execution %s: %s", runner.execution_id, error)
        except Exception as error:  # a store failure: the execution is recovered on restart
            logger.error("execution %s stopped: %s", runner.execution_id, type(error).__name__)
        finally:
            if self._runners.get(runner.execution_id) is runner:
                del self._runners[runner.execution_id]
            if self._keeper is not None and not lost:
                await self._settle_lease(self._keeper, runner)

    async def _settle_lease(self, keeper: LeaseKeeper, runner: ExecutionRunner) -> None:
        """Drop the row of an execution that rests; hand back any other one."""
        try:
            if rests(runner.execution):
                await keeper.finish(runner.execution_id, self._load)
            else:
                await keeper.release(runner.execution_id)
        except Exception as error:  # the row expires instead
            logger.warning("execution %s: lease not updated: %s", runner.execution_id, error)
        keeper.wake()
