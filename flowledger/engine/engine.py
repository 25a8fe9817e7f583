"""``WorkflowEngine``: the asyncio engine of the public API.

The engine owns the ledger, one writer thread that groups saves, the slot pool bounding
running steps, and one runner per execution in progress. Reads go to the store through
a thread; every change goes through the execution's runner (or, when none is running,
a load-command-save under a per-execution lock), so the store is always the truth.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from uuid import uuid4

from flowledger.domain.definition import RetryPolicy, WorkflowDefinition, load_definition
from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution
from flowledger.domain.state import ExecutionState
from flowledger.engine.actions import ActionRegistry
from flowledger.engine.audit import recorded_notifications
from flowledger.engine.commands import CommandDesk
from flowledger.engine.engine_actions import EngineActions
from flowledger.engine.leases import DEFAULT_LEASE_SECONDS, Leases, PostgresLeases
from flowledger.engine.leasing import (
    DEFAULT_POLL_INTERVAL,
    EngineHooks,
    LeaseKeeper,
    rests,
)
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.notifications import Notification
from flowledger.engine.operator_commands import OperatorCommands
from flowledger.engine.operator_methods import OperatorMethods
from flowledger.engine.payload_guards import start_guarded
from flowledger.engine.planning import remember_definition
from flowledger.engine.publishing import Publisher
from flowledger.engine.retries import DEFAULT_RETRY_POLICY
from flowledger.engine.runner_pool import RunnerPool
from flowledger.engine.runner_services import Command, EngineServices
from flowledger.engine.schemas import check
from flowledger.engine.sealing import SealingPolicy
from flowledger.engine.slots import SlotPool
from flowledger.engine.store_calls import StoreCalls
from flowledger.engine.stores import parse_store_url
from flowledger.engine.writer import LedgerWriter
from flowledger.errors import (
    ConcurrencyConflictError,
    ExecutionNotFoundError,
)

logger = logging.getLogger(__name__)

SHARED_WAIT_POLL = 0.2
"""Seconds between two reads of the store while waiting for an execution on a shared store."""


class WorkflowEngine(EngineActions, OperatorMethods):
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
        worker_id: This engine's name among the workers sharing a store (default:
            host, process id and a random suffix).
        lease_seconds: On a shared store, how long a claim on an execution lasts
            unrenewed: how soon other workers take over from a worker that died.
        poll_interval: On a shared store, seconds between two looks for work.
        max_active_executions: On a shared store, most executions this worker drives
            at once (default: twice ``max_concurrent_steps``).
        leases: The lease rows to share work through. Default: the store's own on
            PostgreSQL (several engine processes share it); none on SQLite and
            ``memory://`` (one engine drives every execution). Give
            :class:`~flowledger.engine.leases.MemoryLeases` to engines sharing one
            in-process ``application``.
        cipher_key: Encrypt (AES-GCM) and compress every event and snapshot stored,
            with this key (see :func:`~flowledger.engine.encryption.generate_cipher_key`).
            None takes ``FLOWLEDGER_CIPHER_KEY`` if it is set, else stores in clear
            text. Not with ``application``, which has its own.
        governed: Every operator action (cancel, pause, resume, retry, skip) must
            name an actor and a reason; one without them is refused and records
            nothing. Retry and skip always need both.

    Raises:
        StoreError: The URL is invalid or the store cannot be opened.
        CipherKeyError: The cipher key is malformed.
        ValueError: Both ``store`` and ``application`` are given, or both
            ``application`` and ``cipher_key``.
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
        worker_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_active_executions: int | None = None,
        leases: Leases | None = None,
        cipher_key: str | None = None,
        governed: bool = False,
    ) -> None:
        if application is not None and store is not None:
            msg = "give a store or an application, not both"
            raise ValueError(msg)
        if application is not None and cipher_key is not None:
            msg = "give a cipher key or an application, not both (the application has its key)"
            raise ValueError(msg)
        self.recover = recover
        self._operator = OperatorCommands(governed=governed)
        self.max_concurrent_steps = max_concurrent_steps
        self._slots = SlotPool(max_concurrent_steps)
        self._own_actions = ActionRegistry()
        self._user_actions = actions or ActionRegistry()
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY
        self._app = application or LedgerApplication(
            parse_store_url(store), snapshot_interval=snapshot_interval, cipher_key=cipher_key
        )
        self.ledger = Ledger(application=self._app)
        """The engine's ledger (read side and audit)."""
        self._writer = LedgerWriter(self._app, self._app.snapshot_interval)
        self._store_calls = StoreCalls()  # reads in threads, waited for on close
        self._publisher = Publisher()
        self._started = False
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"
        """This engine's name among the workers sharing its store."""
        if leases is None and self._app.store.kind == "postgresql":
            leases = PostgresLeases(self._app.store, lease_seconds)
        self._keeper = (
            None
            if leases is None
            else LeaseKeeper(
                leases,
                self.worker_id,
                self._store_calls,
                capacity=max_active_executions or 2 * max_concurrent_steps,
                poll_interval=poll_interval,
            )
        )
        self._runners = RunnerPool(self._services, self._load, self._keeper)
        self._hooks = EngineHooks(
            load=self._load,
            save=self._save,
            spawn=self._runners.spawn,
            running=self._runners.running,
            lock=self._runners.lock,
            lost=self._runners.lost,
            clock=self._now,
        )
        self._commands = CommandDesk(runners=self._runners, keeper=self._keeper, hooks=self._hooks)

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
        if self._keeper is not None:
            if self.recover:
                # Executions left without a lease row (a start cut short between its
                # event and its row) are offered; the loop then claims what is free.
                for execution in await self._unfinished():
                    if not rests(execution):
                        await self._keeper.offer(execution.execution_id)
            self._keeper.start(self._hooks, claiming=self.recover)
            return
        if self.recover:
            for execution in await self._unfinished():
                self._runners.spawn(execution)

    async def _unfinished(self) -> list[Execution]:
        ids = await self._store_calls.run(lambda: list(self._app.execution_ids()))
        loaded = [await self._load(execution_id) for execution_id in ids]
        return [execution for execution in loaded if not execution.is_terminal]

    async def stop(self) -> None:
        """Stop runners, then the writer, and end subscriptions.

        In-flight steps stay recorded as running; the next start records them as
        interrupted and runs them again. The store is left consistent.
        """
        if not self._started:
            return
        if self._keeper is not None:
            await self._keeper.stop()
        await self._runners.stop()
        await asyncio.to_thread(self._writer.stop)
        self._publisher.close()
        self._started = False

    def close(self) -> None:
        """Release the store and the ledger's read models (after :meth:`stop`).

        Waits for reads still running in worker threads (a stopped engine's cancelled
        reads run on until they return) before the store is closed.
        """
        self._store_calls.close()
        if self._keeper is not None:
            self._keeper.leases.close()
        self.ledger.close()
        self._app.close()

    async def drain(self) -> None:
        """Stop gracefully: start nothing new, let in-flight steps finish, then stop.

        Each execution's steps in flight finish and are recorded; nothing new starts.
        On a shared store each unfinished execution is handed back
        (``ExecutionReleased``), so another worker continues it at once.
        """
        if not self._started:
            return
        if self._keeper is not None:
            await self._keeper.stop()  # claims nothing more
        await self._runners.drain()
        await self.stop()

    # -- starting and waiting -------------------------------------------------------------

    async def start_workflow(
        self,
        definition: WorkflowDefinition | Mapping[str, Any] | str | Any,
        input_data: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        run_here: bool = True,
    ) -> str:
        """Start an execution and return its id.

        Starting an ``execution_id`` that exists returns it as it is, running nothing twice.
        On a shared store the engine claims the execution and drives it, unless
        ``run_here`` is False: then it is left to whichever worker claims it first.

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
        if SealingPolicy.of(workflow) is None:
            execution = Execution.start(key, workflow, data, self._now())
        else:  # its keys are read or made in the store
            now = self._now()
            execution = await self._store_calls.run(
                start_guarded, key, workflow, data, now, self._app.keys
            )
        keeper = self._keeper
        if keeper is not None and run_here:
            if await keeper.claim(key) is None:
                return key  # another worker is starting it under the same id
            execution.claim(keeper.worker, self._now())
        try:
            await self._save(execution)
        except ConcurrencyConflictError:
            return key  # started concurrently under the same id
        if keeper is not None and not run_here:
            await keeper.offer(key)
            keeper.wake()
            return key
        self._runners.spawn(execution)
        return key

    async def wait_for(self, execution_id: str, timeout: float | None = None) -> ExecutionState:
        """Return the execution's state once it is terminal or PAUSED.

        Raises:
            ExecutionNotFoundError: No such execution.
            TimeoutError: ``timeout`` seconds passed first.
        """
        poll = None if self._keeper is None else SHARED_WAIT_POLL
        return await self._publisher.wait(
            execution_id, lambda: self.get_workflow_status(execution_id), timeout, poll=poll
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

    def subscribe(
        self, execution_id: str | None = None, from_version: int = 0
    ) -> AsyncIterator[Notification]:
        """Yield status notifications: first what already happened, then live.

        Their ``data`` is as recorded: sealed personal values stay sealed (listeners
        too), so notifications never carry personal data in clear.
        """

        async def catch_up() -> list[Notification]:
            return await self._store_calls.run(recorded_notifications, self._app, execution_id)

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
            worker=None if self._keeper is None else self._keeper.worker,
        )

    async def _command(
        self, execution_id: str, command: Command, *, take_over: bool = True
    ) -> ExecutionState:
        await self.start()
        return await self._commands.run(execution_id, command, take_over=take_over or self.recover)

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
