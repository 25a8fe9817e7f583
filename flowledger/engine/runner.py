"""Drives one execution: plan, record, save, run actions, record outcomes, until it rests.

Each execution in progress has one runner, and only the runner changes its aggregate, so
there is one writer per aggregate and its in-memory state never runs ahead of the store:
commands are applied, then saved in one transaction per step transition, and only then
are actions launched, notifications published and waiters woken. Everything that can
move an execution on — an action's outcome, an operator's command, a free slot, a retry
time — arrives in the runner's inbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowledger.domain.definition import StepDefinition, WorkflowDefinition
from flowledger.domain.execution import Execution
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine import decisions as d
from flowledger.engine.invocation import Outcome, invoke
from flowledger.engine.outcomes import (
    record_compensation,
    record_outcome,
    refusal,
    schedule_missing_retries,
)
from flowledger.engine.planning import compensation_decision, definition_of, plan
from flowledger.engine.runner_services import (
    MAX_CONFLICTS,
    RELEASE_REASON,
    Command,
    EngineServices,
    LeaseLost,
)
from flowledger.engine.slots import RunnerSlots
from flowledger.errors import ConcurrencyConflictError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Finished:
    step_id: str
    outcome: Outcome
    compensation: bool


@dataclass(frozen=True)
class _Submitted:
    command: Command
    done: asyncio.Future[None]


_SLOT = "slot"
_TICK = "tick"


class ExecutionRunner:
    """Advances one execution until it is terminal or paused with nothing in flight."""

    def __init__(self, services: EngineServices, execution: Execution) -> None:
        self._services = services
        self._execution = execution
        self._definition: WorkflowDefinition = definition_of(execution)
        self._inbox: asyncio.Queue[_Finished | _Submitted | str] = asyncio.Queue()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._slots = RunnerSlots(services.slots, lambda: self._inbox.put_nowait(_SLOT))
        self._timer: asyncio.TimerHandle | None = None
        self._interrupted: set[str] = set()
        self._refused = False  # a start in the latest plan failed before its action ran
        self._unsaved: list[_Finished] = []  # outcomes recorded since the last save
        self._draining = False
        self.released = False
        """True once the runner handed the execution back (see :meth:`drain`)."""
        self.closed = False
        """True once the runner has stopped taking commands."""

    @property
    def execution_id(self) -> str:
        """The id of the execution this runner drives."""
        return self._execution.execution_id

    @property
    def execution(self) -> Execution:
        """The execution as this runner last saved (or loaded) it."""
        return self._execution

    def drain(self) -> None:
        """Start nothing new; stop once the steps in flight are recorded.

        On a shared store the runner then hands the execution back (unless it rests).
        """
        self._draining = True
        self._inbox.put_nowait(_TICK)

    def submit(self, command: Command) -> asyncio.Future[None]:
        """Queue an operator's command; the future settles once it is saved (or refused).

        Raises:
            RuntimeError: The runner has stopped; apply the command directly instead.
        """
        if self.closed:
            msg = "runner has stopped"
            raise RuntimeError(msg)
        done = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Submitted(command, done))
        return done

    async def run(self) -> None:
        """Advance the execution until it rests; on cancellation, leave in-flight steps.

        Steps left RUNNING by a cancelled runner (engine shutdown) are recorded as
        interrupted and re-run by the next runner of this execution.
        """
        try:
            await self._recover()
            while True:
                await self._advance()
                if self._at_rest():
                    self.closed = True
                    await self._release_if_draining()
                    return
                await self._handle(await self._inbox.get())
        finally:
            self.closed = True
            self._shutdown()
            self._fail_pending_commands()

    # -- one turn -------------------------------------------------------------------------

    async def _advance(self) -> None:
        """Plan and apply until nothing more can be decided now; save once; launch.

        A plan starts at most as many steps as the runner can take slots for now (one
        that used them all makes it queue for a slot), and decides all that is due unless
        it says ``replan`` or a start was refused: then the runner plans again.
        """
        for _ in range(MAX_CONFLICTS):
            launches = self._decide()
            try:
                saved = await self._save()
            except BaseException:
                self._slots.release(len(launches))
                raise
            if saved:
                for launch in launches:
                    launch()
                return
            self._slots.release(len(launches))  # planned on what another engine changed: again
        raise ConcurrencyConflictError([self.execution_id])

    def _decide(self) -> list[Callable[[], None]]:
        """Plan and apply what can be decided now; return the launches to make once saved."""
        launches: list[Callable[[], None]] = []
        saturated = False
        withheld = False
        wake_at: datetime | None = None
        for _ in range(len(self._definition.steps) * 4 + 8):
            available = self._slots.available
            if self._draining:
                available = 0
            decided = plan(
                self._execution,
                self._definition,
                self._services.clock(),
                max_starts=available,
                interrupted=self._interrupted,
            )
            wake_at = decided.wake_at
            withheld = decided.withheld
            if not decided.decisions:
                break
            self._refused = False
            starts = sum(self._apply(decision, launches) for decision in decided.decisions)
            saturated = starts == available
            if not (decided.replan or self._refused):  # planning again would decide nothing
                if self._execution.status is not ExecutionStatus.RUNNING:
                    wake_at = None  # nor wait for a retry
                break
        self._schedule_wake(wake_at)
        # A start was due but every slot is taken: queue for one, then plan again.
        self._slots.settle(used_all=saturated, want_more=withheld and not self._draining)
        return launches

    def _at_rest(self) -> bool:
        if self._in_flight or self._slots.waiting or not self._inbox.empty():
            return False
        if self._draining:
            return True
        status = self._execution.status
        if status.is_terminal or status is ExecutionStatus.PAUSED:
            return True
        if self._timer is not None:
            return False
        logger.error("execution %s is %s with nothing to do", self.execution_id, status.value)
        return True

    async def _handle(self, message: _Finished | _Submitted | str) -> None:
        if isinstance(message, _Finished):
            self._record_outcome(message)
            self._unsaved.append(message)
            while not self._inbox.empty():  # several outcomes share one save
                queued = self._inbox.get_nowait()
                if not isinstance(queued, _Finished):
                    self._inbox.put_nowait(queued)
                    break
                self._record_outcome(queued)
                self._unsaved.append(queued)
        elif isinstance(message, _Submitted):
            await self._run_command(message)
        elif message == _SLOT:
            self._slots.hold()
        # a tick only wakes the loop: the next plan sees the time

    async def _run_command(self, submitted: _Submitted) -> None:
        try:
            for _ in range(MAX_CONFLICTS):
                submitted.command(self._execution, self._services.clock())
                if await self._save():
                    break
            else:
                raise ConcurrencyConflictError([self.execution_id])
        except BaseException as error:
            if not submitted.done.done():
                submitted.done.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        if not submitted.done.done():
            submitted.done.set_result(None)

    async def _save(self) -> bool:
        """Save what was recorded; False when another engine recorded events first.

        After a conflict the execution is reloaded with the other engine's events (an
        operator's command from another process, say) and the outcomes recorded since
        the last save are recorded again on it; the caller decides again. A runner
        that lost its lease to another worker stops (:class:`LeaseLost`).
        """
        if not self._execution.pending_events:
            return True
        try:
            await self._services.save(self._execution)
        except ConcurrencyConflictError:
            await self._reload()
            return False
        except BaseException:
            # The aggregate is ahead of the store: take the store's word for it.
            self._execution = await self._services.reload(self.execution_id)
            raise
        self._unsaved.clear()
        return True

    async def _reload(self) -> None:
        self._execution = execution = await self._services.reload(self.execution_id)
        worker = self._services.worker
        if worker is not None and execution.worker != worker:
            raise LeaseLost(self.execution_id, execution.worker)
        for finished in self._unsaved:
            self._record_outcome(finished)

    async def _release_if_draining(self) -> None:
        """Hand a drained execution back, unless it rests (terminal or paused)."""
        worker, execution = self._services.worker, self._execution
        if not self._draining or worker is None or execution.worker != worker:
            return
        if execution.is_terminal or execution.status is ExecutionStatus.PAUSED:
            return
        for _ in range(MAX_CONFLICTS):
            execution.release(worker, RELEASE_REASON, self._services.clock())
            if await self._save():
                self.released = True
                return
            execution = self._execution

    # -- decisions ------------------------------------------------------------------------

    def _apply(self, decision: d.Decision, launches: list[Callable[[], None]]) -> int:
        """Apply one decision as aggregate commands; return the slots it took (0 or 1)."""
        execution, at = self._execution, self._services.clock()
        match decision:
            case d.StartStep(step_id=step_id, parameters=parameters):
                self._slots.take()
                self._interrupted.discard(step_id)
                self._start(self._definition.step(step_id), parameters, launches)
                return 1
            case d.CompensateStep(step_id=step_id, action=action, parameters=parameters):
                self._slots.take()
                decision.apply(execution, at)
                refused = refusal(self._services.actions, action, parameters)
                if refused is not None:
                    # Recorded as the compensation's failure: the rollback ends
                    # ROLLBACK_FAILED, naming the action, instead of stopping the runner.
                    execution.fail_compensation(step_id, refused, at)
                    self._refuse()
                    return 1
                launches.append(lambda: self._launch(step_id, action, parameters, None, True))
                return 1
            case _:
                decision.apply(execution, at)
                return 0

    def _start(
        self,
        step: StepDefinition,
        parameters: dict[str, Any],
        launches: list[Callable[[], None]],
    ) -> None:
        execution, at = self._execution, self._services.clock()
        execution.start_step(step.id, parameters, at)
        action = step.action or ""
        refused = refusal(
            self._services.actions,
            action,
            parameters,
            input_schema=step.input_schema,
            step_id=step.id,
        )
        if refused is not None:
            execution.fail_step(step.id, refused, False, 0.0, at)
            self._refuse()
            return
        launches.append(lambda: self._launch(step.id, action, parameters, step.timeout, False))

    def _refuse(self) -> None:
        """An action could not run: give its slot back, and plan again at once."""
        self._slots.release()
        self._refused = True

    # -- actions --------------------------------------------------------------------------

    def _launch(
        self,
        step_id: str,
        action_name: str,
        parameters: dict[str, Any],
        timeout: float | None,
        compensation: bool,
    ) -> None:
        action = self._services.actions.get(action_name)

        async def attempt() -> None:
            try:
                outcome = await invoke(action, parameters, timeout=timeout, step_id=step_id)
            finally:
                self._slots.release()
            self._in_flight.pop(step_id, None)
            self._inbox.put_nowait(_Finished(step_id, outcome, compensation))

        self._in_flight[step_id] = asyncio.create_task(attempt(), name=f"step {step_id}")

    def _record_outcome(self, finished: _Finished) -> None:
        execution, at, outcome = self._execution, self._services.clock(), finished.outcome
        if finished.compensation:
            record_compensation(execution, finished.step_id, outcome, at)
            return
        record_outcome(
            execution,
            self._definition.step(finished.step_id),
            outcome,
            at,
            default_policy=self._services.retry_policy,
            random=self._services.random,
        )

    # -- slots, timers, recovery, shutdown ------------------------------------------------

    def _schedule_wake(self, wake_at: datetime | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wake_at is None:
            return
        delay = max((wake_at - self._services.clock()).total_seconds(), 0.0)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._inbox.put_nowait(_TICK)

    async def _recover(self) -> None:
        """Take over steps a previous process left in flight.

        A step left RUNNING is recorded as interrupted; the planner starts it again (or
        cancels it when the execution is ending). A step left COMPENSATING has its
        compensation run again: an action runs at least once, a recorded outcome never
        twice. A failure whose retry decision was not stored is decided again.
        """
        for _ in range(MAX_CONFLICTS):
            execution, at = self._execution, self._services.clock()
            state = execution.state()
            for step_id, step in state.steps.items():
                if step.status is StepStatus.RUNNING:
                    execution.interrupt_step(step_id, at)
                    self._interrupted.add(step_id)
            schedule_missing_retries(
                execution,
                self._definition,
                at,
                default_policy=self._services.retry_policy,
                random=self._services.random,
            )
            if await self._save():
                break
        else:
            raise ConcurrencyConflictError([self.execution_id])
        execution = self._execution
        for step_id, step in state.steps.items():
            if step.status is StepStatus.COMPENSATING:
                decision = compensation_decision(step_id, state, self._definition)
                if isinstance(decision, d.CompensateStep):
                    await self._slots.take_waiting()
                    self._launch(step_id, decision.action, decision.parameters, None, True)
                else:
                    decision.apply(execution, self._services.clock())
                    if not await self._save():
                        raise ConcurrencyConflictError([self.execution_id])

    def _shutdown(self) -> None:
        for task in self._in_flight.values():
            task.cancel()
        self._slots.close()
        if self._timer is not None:
            self._timer.cancel()

    def _fail_pending_commands(self) -> None:
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            if isinstance(message, _Submitted) and not message.done.done():
                message.done.set_exception(RuntimeError("runner has stopped"))
