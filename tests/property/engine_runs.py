"""The driver that runs a generated workflow on a real engine (see :mod:`tests.property.workflows`).

:func:`running` runs a :class:`~tests.property.workflows.WorkflowRun` on a real
``WorkflowEngine`` until it ends, issuing the commands of a schedule on the way, and
yields an :class:`EngineRun` with the engine still open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flowledger import (
    ExecutionState,
    ExecutionStatus,
    HistoryEntry,
    InvalidTransitionError,
    WorkflowEngine,
)
from tests.property.workflows import FAST_DEFAULT_RETRY, NEED, CallLog, Command, WorkflowRun

WAIT = 20.0
"""Seconds a run may take to come to rest before the example fails (instead of hanging)."""

EXECUTION_ID = "run"
"""The id every driven execution is started under."""

OPERATOR = "operator"
"""The actor of the commands :func:`running` issues."""


class _Complaints(logging.Handler):
    """Keeps the warnings and errors the engine logs: a sound run logs none."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class EngineRun:
    """A run driven by :func:`running`, with the engine still open.

    Attributes:
        engine: The engine (stopped and closed when ``running`` exits).
        calls: What the actions were called with.
        first_rest: What the first ``wait_for`` returned (the runner's own state when
            the execution came to rest while it was being waited for).
        rests: The execution's status each time it came to rest (nothing in flight).
        accepted: Commands the engine accepted, in the order they returned.
        refused: Commands refused with ``InvalidTransitionError``.
        resumes: Resumes the driver issued to end a pause.
    """

    def __init__(
        self, engine: WorkflowEngine, calls: CallLog, commands: tuple[Command, ...]
    ) -> None:
        self.engine = engine
        self.calls = calls
        self.first_rest: ExecutionState | None = None
        self.rests: list[ExecutionStatus] = []
        self.accepted: list[Command] = []
        self.refused: list[Command] = []
        self.resumes = 0
        self.unexpected: list[BaseException] = []
        self.complaints = _Complaints()
        self._pending = sorted(commands, key=lambda command: command.after)
        self._tasks: list[asyncio.Task[None]] = []
        self._saved = 0

    async def state(self) -> ExecutionState:
        """Return the execution's current state, from the engine."""
        return await self.engine.get_workflow_status(EXECUTION_ID)

    async def history(self) -> list[HistoryEntry]:
        """Return the execution's history, from the engine's ledger."""
        return await asyncio.to_thread(self.engine.ledger.history, EXECUTION_ID)

    async def settle(self) -> ExecutionState:
        """Return the state once no runner and no command is in progress.

        The engine's runner tasks are awaited (a private attribute) because the
        properties must see every event the engine would record, including those
        after a PAUSED status that ``wait_for`` already reported.

        Raises:
            TimeoutError: Not at rest within :data:`WAIT` seconds.
            AssertionError: A command failed with anything but
                ``InvalidTransitionError``, or the engine logged a warning or an error
                (a runner that stopped, an execution left with nothing to do).
        """

        async def quiet() -> None:
            while busy := [
                t for t in (*self.engine._runners.tasks(), *self._tasks) if not t.done()
            ]:
                await asyncio.gather(*busy, return_exceptions=True)

        await asyncio.wait_for(quiet(), WAIT)
        assert not self.unexpected, self.unexpected
        assert not self.complaints.records, [r.getMessage() for r in self.complaints.records]
        state = await self.state()
        self.rests.append(state.status)
        return state

    async def drive(self, *, provide_missing: bool = True) -> ExecutionState:
        """Come to rest; issue the commands still due, a moment's worth per rest; resume.

        With ``provide_missing``, an execution PAUSED at rest is resumed (providing
        ``need`` when it waits for an input) until it ends.

        Raises:
            AssertionError: A command failed with anything but
                ``InvalidTransitionError``, or the execution did not end after many
                rests.
        """
        for _ in range(20):
            state = await self.settle()
            if self._pending:
                # Commands due at the same moment go together, racing each other.
                due = self._pending[0].after
                while self._pending and self._pending[0].after == due:
                    self._tasks.append(asyncio.create_task(self.issue(self._pending.pop(0))))
            elif state.status is ExecutionStatus.PAUSED and provide_missing:
                inputs = {"need": NEED} if state.paused_on is not None else None
                await self.engine.resume_workflow(EXECUTION_ID, inputs)
                self.resumes += 1
            else:
                return state
        raise AssertionError(f"the execution did not end: it came to rest as {self.rests}")

    def __call__(self, entry: HistoryEntry) -> None:
        """Issue the commands due once this entry is saved (the engine's listener)."""
        # Called while the engine is saving: a command awaited here would wait for the
        # runner that is waiting for this save, so each runs as a task of its own.
        self._saved += 1
        while self._pending and self._pending[0].after <= self._saved:
            self._tasks.append(asyncio.create_task(self.issue(self._pending.pop(0))))

    async def issue(self, command: Command) -> None:
        """Issue one command; record whether it was accepted or refused."""
        engine = self.engine
        try:
            if command.kind == "cancel":
                await engine.cancel_workflow(
                    EXECUTION_ID, "property", actor=OPERATOR, rollback=command.rollback
                )
            elif command.kind == "pause":
                await engine.pause_workflow(EXECUTION_ID, "property", actor=OPERATOR)
            else:
                inputs = {"need": NEED} if command.with_input else None
                await engine.resume_workflow(EXECUTION_ID, inputs, actor=OPERATOR)
        except InvalidTransitionError:
            self.refused.append(command)
        except Exception as error:  # reported by settle: only refusals are expected
            self.unexpected.append(error)
        else:
            self.accepted.append(command)


@asynccontextmanager
async def running(
    run: WorkflowRun,
    store: str,
    commands: tuple[Command, ...] = (),
    *,
    snapshot_interval: int = 100,
    provide_missing: bool = True,
) -> AsyncIterator[EngineRun]:
    """Run ``run`` on a fresh engine until it ends; yield the result with the engine open.

    Commands are issued from an engine listener once their number of events is saved;
    those whose moment never comes are issued once the execution rests, those due at
    the same moment together
    (see :meth:`EngineRun.drive`). The engine is stopped and closed on exit.
    """
    registry, calls = run.behaviours.registry()
    engine = WorkflowEngine(
        store,
        max_concurrent_steps=run.concurrency,
        actions=registry,
        retry_policy=FAST_DEFAULT_RETRY,
        snapshot_interval=snapshot_interval,
    )
    result = EngineRun(engine, calls, commands)
    engine.add_listener(result)
    logger = logging.getLogger("flowledger")
    logger.addHandler(result.complaints)
    try:
        async with engine:
            await engine.start_workflow(run.definition, run.input, execution_id=EXECUTION_ID)
            first = asyncio.create_task(engine.wait_for(EXECUTION_ID))
            await result.drive(provide_missing=provide_missing)
            result.first_rest = await first
            yield result
    finally:
        logger.removeHandler(result.complaints)
        engine.close()
