"""``WorkflowEngine``: the asyncio engine of the public API.

The engine owns the ledger, one writer thread that groups saves, the slot pool bounding
running steps, and one runner per execution in progress. Reads go to the store through
a thread; every change goes through the execution's runner (or, when none is running,
a load-command-save under a per-execution lock), so the store is always the truth.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import uuid4

from flowledger.domain.definition import RetryPolicy, WorkflowDefinition, load_definition
from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution
from flowledger.domain.state import ExecutionState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.actions import BUILTIN_ACTIONS, ActionRegistry
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.notifications import Notification, notifications_of
from flowledger.engine.planning import remember_definition
from flowledger.engine.publishing import Listener, Publisher
from flowledger.engine.retries import DEFAULT_RETRY_POLICY
from flowledger.engine.runner import Command, EngineServices, ExecutionRunner
from flowledger.engine.schemas import check
from flowledger.engine.slots import SlotPool
from flowledger.engine.store_calls import StoreCalls
from flowledger.engine.stores import parse_store_url
from flowledger.engine.writer import LedgerWriter
from flowledger.errors import (
    ConcurrencyConflictError,
    ExecutionNotFoundError,
    InvalidTransitionError,
)

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class WorkflowEngine:
    """Runs workflow executions durably on a ledger.

    Args:
        store: Store URL (``memory://``, ``sqlite:///path.db``, ``postgresql://...``);
            None takes ``FLOWLEDGER_STORE`` or ``sqlite:///flowledger.db``.
        max_concurrent_steps: Most steps running at once in this engine, across all
            executions.
        actions: A registry of the actions definitions call (built-ins are always there).
        retry_policy: The retry policy of steps that declare none.
        snapshot_interval: Snapshot an execution every this many events (0: never).
        recover: On start, pick up every unfinished execution in the store and run it
            to its end. False for a process that only acts on the executions it is
            given (the command line's ``cancel`` or ``resume``), so it never runs
            executions another process owns; a cancel or pause of an execution with
            steps in flight is recorded and left to the engine running it, while a
            resume takes the execution over.
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        max_concurrent_steps: int = 5,
        actions: ActionRegistry | None = None,
        retry_policy: RetryPolicy | None = None,
        snapshot_interval: int = 100,
        recover: bool = True,
        application: LedgerApplication | None = None,
    ) -> None:
        if application is not None and store is not None:
            msg = "give a store or an application, not both"
            raise ValueError(msg)
        self.recover = recover
        self.max_concurrent_steps = max_concurrent_steps
        self._slots = SlotPool(max_concurrent_steps)
        self._own_actions = ActionRegistry()
        self._user_actions = actions or ActionRegistry()
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY
        self._app = application or LedgerApplication(
            parse_store_url(store), snapshot_interval=snapshot_interval
        )
        self.ledger = Ledger(application=self._app)
        """The engine's ledger (read side and audit)."""
        self._writer = LedgerWriter(self._app, self._app.snapshot_interval)
        self._store_calls = StoreCalls()  # reads in threads, waited for on close
        self._publisher = Publisher()
        self._runners: dict[str, ExecutionRunner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the writer and recover every unfinished execution (idempotent).

        With ``recover=False`` nothing is recovered: an execution runs here only once
        it is started, cancelled, paused or resumed through this engine.
        """
        if self._started:
            return
        self._started = True
        self._publisher.reopen()  # a restarted engine serves live subscriptions again
        self._writer.start()
        if not self.recover:
            return
        for execution_id in await self._store_calls.run(lambda: list(self._app.execution_ids())):
            execution = await self._load(execution_id)
            if not execution.is_terminal:
                self._spawn(execution)

    async def stop(self) -> None:
        """Stop runners, then the writer, and end subscriptions.

        In-flight steps stay recorded as running; the next start records them as
        interrupted and runs them again. The store is left consistent.
        """
        if not self._started:
            return
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self._writer.stop)
        self._publisher.close()
        self._started = False

    def close(self) -> None:
        """Release the store and the ledger's read models (after :meth:`stop`).

        Waits for reads still running in worker threads (a stopped engine's cancelled
        reads run on until they return) before the store is closed.
        """
        self._store_calls.close()
        self.ledger.close()
        self._app.close()

    # -- actions and listeners --------------------------------------------------------------

    def action(self, name: str | None = None) -> Callable[[F], F]:
        """Register an action on the engine's own registry (decorator).

        Raises:
            ActionRegistrationError: The name is taken by another action (a built-in
                or one of the registry given to the engine).
        """

        def decorate(function: F) -> F:
            trial = self._own_actions.copy()
            trial.action(name)(function)
            # A clash is refused now, not when an execution starts.
            BUILTIN_ACTIONS.merged_with(self._user_actions, trial)
            return self._own_actions.action(name)(function)

        return decorate

    @property
    def actions(self) -> ActionRegistry:
        """Every action this engine can run: built-ins, the given registry, its own."""
        return BUILTIN_ACTIONS.merged_with(self._user_actions, self._own_actions)

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback`` with every history entry once it is durably saved."""
        self._publisher.add_listener(callback)

    # -- starting and waiting -------------------------------------------------------------

    async def start_workflow(
        self,
        definition: WorkflowDefinition | Mapping[str, Any] | str | Any,
        input_data: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
    ) -> str:
        """Start an execution and return its id.

        Starting an ``execution_id`` that exists returns it as it is, running nothing twice.

        Raises:
            DefinitionError: The definition is invalid.
            SchemaValidationError: ``input_data`` does not match the input schema.
        """
        await self.start()
        _ = self.actions  # registries that clash are refused before anything is recorded
        workflow = (
            definition
            if isinstance(definition, WorkflowDefinition)
            else load_definition(definition)
        )
        data = dict(input_data or {})
        if workflow.input_schema is not None:
            check(workflow.input_schema, data, schema_type="input", step_id=None)
        key = execution_id or str(uuid4())
        if execution_id is not None and await self._exists(key):
            return key
        remember_definition(workflow)  # its runner finds it loaded, not loaded again
        execution = Execution.start(key, workflow, data, self._now())
        try:
            await self._save(execution)
        except ConcurrencyConflictError:
            return key  # started concurrently under the same id
        self._spawn(execution)
        return key

    async def wait_for(self, execution_id: str, timeout: float | None = None) -> ExecutionState:
        """Return the execution's state once it is terminal or PAUSED.

        Raises:
            ExecutionNotFoundError: No such execution.
            TimeoutError: ``timeout`` seconds passed first.
        """
        return await self._publisher.wait(
            execution_id, lambda: self.get_workflow_status(execution_id), timeout
        )

    async def run_workflow(
        self,
        definition: WorkflowDefinition | Mapping[str, Any] | str | Any,
        input_data: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        timeout: float | None = None,
    ) -> ExecutionState:
        """Start an execution and wait until it is terminal or PAUSED."""
        key = await self.start_workflow(definition, input_data, execution_id=execution_id)
        return await self.wait_for(key, timeout)

    async def get_workflow_status(self, execution_id: str) -> ExecutionState:
        """Return the execution's current state, from the store."""
        return await self._store_calls.run(self.ledger.get, execution_id)

    # -- operators' commands --------------------------------------------------------------

    async def cancel_workflow(
        self,
        execution_id: str,
        reason: str = "cancelled",
        *,
        actor: str | None = None,
        rollback: bool = False,
    ) -> ExecutionState:
        """Cancel an execution.

        In-flight steps finish and are recorded, nothing new starts, and the execution
        ends CANCELLED (ROLLED_BACK when ``rollback`` and a completed step declares
        ``compensate``).

        Raises:
            InvalidTransitionError: The execution had already ended (nothing changes).
        """

        def command(execution: Execution, at: datetime) -> None:
            execution.request_cancel(reason, actor, at, rollback=rollback)

        return await self._command(execution_id, command, take_over=False)

    async def pause_workflow(
        self, execution_id: str, reason: str = "requested", *, actor: str | None = None
    ) -> ExecutionState:
        """Pause: in-flight steps finish and are recorded; nothing new starts until resumed."""

        def command(execution: Execution, at: datetime) -> None:
            execution.pause(reason, at, actor=actor)

        return await self._command(execution_id, command, take_over=False)

    async def resume_workflow(
        self,
        execution_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> ExecutionState:
        """Resume a paused execution, providing ``inputs`` first (merged into its input)."""

        def command(execution: Execution, at: datetime) -> None:
            if execution.status is not ExecutionStatus.PAUSED:
                # Refused before the inputs are recorded: a refused resume records nothing.
                raise InvalidTransitionError(
                    "execution", execution.status.value, "resume", execution_id
                )
            if inputs:
                execution.provide_input(inputs, actor, at)
            execution.resume(actor, at)

        return await self._command(execution_id, command)

    def subscribe(
        self, execution_id: str | None = None, from_version: int = 0
    ) -> AsyncIterator[Notification]:
        """Yield status notifications: first what already happened, then live."""

        async def catch_up() -> list[Notification]:
            if execution_id is None:
                ids = await self._store_calls.run(lambda: list(self._app.execution_ids()))
            else:
                ids = [execution_id]
            notes: list[Notification] = []
            for key in ids:
                entries = await self._store_calls.run(self.ledger.history, key)
                notes.extend(notifications_of(key, entries))
            return notes

        return self._publisher.subscribe(execution_id, from_version, catch_up)

    # -- internals ------------------------------------------------------------------------

    def _services(self) -> EngineServices:
        return EngineServices(
            actions=self.actions,
            slots=self._slots,
            retry_policy=self.retry_policy,
            save=self._save,
            reload=self._load,
            clock=self._now,
            random=random.random,
        )

    def _spawn(self, execution: Execution) -> asyncio.Task[None]:
        runner = ExecutionRunner(self._services(), execution)
        self._runners[execution.execution_id] = runner
        task = asyncio.create_task(self._drive(runner), name=f"execution {runner.execution_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drive(self, runner: ExecutionRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a store failure: the execution is recovered on restart
            logger.error("execution %s stopped: %s", runner.execution_id, type(error).__name__)
        finally:
            if self._runners.get(runner.execution_id) is runner:
                del self._runners[runner.execution_id]

    async def _command(
        self, execution_id: str, command: Command, *, take_over: bool = True
    ) -> ExecutionState:
        await self.start()
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            # Looked up under the lock: the command that held it may have spawned a
            # runner, and a save beside a running runner conflicts with its saves.
            if await self._hand_to_runner(execution_id, command):
                return await self.get_workflow_status(execution_id)
            execution = await self._load(execution_id)
            command(execution, self._now())
            await self._save(execution)
            if execution.is_terminal or execution_id in self._runners:
                return execution.state()
            if not (take_over or self.recover) and _in_flight(execution):
                # Another engine may be running these steps: record the command only,
                # never interrupt them. The engine that runs it (or recovers it) acts on it.
                return execution.state()
            task = self._spawn(execution)
        if execution.cancel_requested:
            # Nothing was in flight (no runner was running it): the cancel completes now.
            await asyncio.shield(task)
        return await self.get_workflow_status(execution_id)

    async def _hand_to_runner(self, execution_id: str, command: Command) -> bool:
        """Run ``command`` through the execution's runner, if one is running it."""
        runner = self._runners.get(execution_id)
        if runner is None or runner.closed:
            return False
        await runner.submit(command)
        return True

    async def _save(self, execution: Execution) -> list[ExecutionEvent]:
        events = await self._writer.save(execution)
        if events:
            await self._publisher.publish(execution, events)
        return events

    async def _load(self, execution_id: str) -> Execution:
        return await self._store_calls.run(self._app.load, execution_id)

    async def _exists(self, execution_id: str) -> bool:
        try:
            await self._load(execution_id)
        except ExecutionNotFoundError:
            return False
        return True

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)


def _in_flight(execution: Execution) -> bool:
    """Whether a step of the execution is recorded as running (or compensating)."""
    busy = (StepStatus.RUNNING, StepStatus.COMPENSATING)
    return any(step.status in busy for step in execution.state().steps.values())
