"""Runs of one execution on a fresh SQLite file: uninterrupted, or crashed and recovered.

A run starts the execution on an engine whose store crashes after a chosen event (or
never), drives it until it rests (resuming it with the inputs given when it pauses on a
missing one), and, if the store crashed, stops that engine and lets a new engine with
``recover=True`` on the same file finish it. Every engine is stopped and closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flowledger.domain.definition import RetryPolicy, WorkflowDefinition
from flowledger.domain.state import ExecutionState
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.actions import ActionRegistry
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.invocation import current_step_id
from flowledger.engine.ledger import Ledger
from flowledger.testing._crash import CrashingApplication, InjectedCrash, RunTrace
from flowledger.testing._fakes import Fake

T = TypeVar("T")

EXECUTION_ID = "checked-execution"
"""The id of the execution in every run (each run has a store of its own)."""

MAX_RESUMES = 3
"""Resumes a run makes at most: a run that pauses again after them is left PAUSED."""

RESUMING_ACTOR = "flowledger.testing"
"""The actor recorded for the kit's resumes."""


@dataclass(frozen=True)
class RunPlan:
    """What every run of one check shares.

    Attributes:
        definition: The definition the engine runs.
        fakes: The fake of each action name.
        input: The execution input.
        resume_inputs: Inputs to resume with when the execution pauses on a missing
            one (None: a paused execution stays paused).
        retry_policy: The engine-wide retry policy.
        max_concurrent_steps: The engine's bound on steps running at once.
        timeout: Seconds each engine of a run may take to bring the execution to rest.
    """

    definition: WorkflowDefinition
    fakes: Mapping[str, Fake]
    input: Mapping[str, Any]
    resume_inputs: Mapping[str, Any] | None
    retry_policy: RetryPolicy
    max_concurrent_steps: int
    timeout: float


@dataclass(frozen=True)
class RunResult:
    """One run, once it ended.

    Attributes:
        store: The URL of the run's SQLite store.
        state: The execution's state as the last engine reported it.
        trace: Every stored event and fake call of the run, in order.
        crash_after: The event after which the store crashed (None: it never did).
        crashed: The store did crash, and a second engine recovered the execution.
        resumes: How many times the kit resumed the execution.
        timed_out: An engine did not bring the execution to rest in time.
    """

    store: str
    state: ExecutionState
    trace: RunTrace
    crash_after: int | None
    crashed: bool
    resumes: int
    timed_out: bool


async def execute(plan: RunPlan, store: Path, crash_after: int | None = None) -> RunResult:
    """Run the plan's execution on a new SQLite file ``store``, crashing it after an event.

    Args:
        plan: What to run.
        store: Path of the SQLite file (created; it must not hold an execution).
        crash_after: Crash the store after this many events, 1 or more (None: no
            crash).
    """
    driver = _Driver(plan, f"sqlite:///{store}", RunTrace(asyncio.get_running_loop()))
    state: ExecutionState | None = None
    timed_out = False
    try:
        state = await driver.run_engine(crash_after, start=True)
        if state is None:
            state = await driver.run_engine(None, start=False)
    except TimeoutError:
        timed_out = True
    if state is None:
        with Ledger(driver.url) as ledger:
            state = ledger.get(EXECUTION_ID)
    return RunResult(
        store=driver.url,
        state=state,
        trace=driver.trace,
        crash_after=crash_after,
        crashed=driver.trace.crashed.is_set(),
        resumes=driver.resumes,
        timed_out=timed_out,
    )


class _Driver:
    """Drives the engines of one run."""

    def __init__(self, plan: RunPlan, url: str, trace: RunTrace) -> None:
        self.plan = plan
        self.url = url
        self.trace = trace
        self.resumes = 0
        self._crashable = False  # whether the engine running now has a store that crashes

    async def run_engine(self, crash_after: int | None, *, start: bool) -> ExecutionState | None:
        """Run one engine until the execution rests; None when its store crashed.

        Raises:
            TimeoutError: The execution did not rest within the plan's timeout.
        """
        application = CrashingApplication(self.url, trace=self.trace, crash_after=crash_after)
        self._crashable = crash_after is not None
        engine = WorkflowEngine(
            application=application,
            actions=self._registry(),
            retry_policy=self.plan.retry_policy,
            max_concurrent_steps=self.plan.max_concurrent_steps,
        )
        try:
            async with asyncio.timeout(self.plan.timeout):
                await engine.start()  # recovers what a crashed engine left unfinished
                if start:  # its first event is stored: a store crashes after one at least
                    await engine.start_workflow(
                        self.plan.definition, self.plan.input, execution_id=EXECUTION_ID
                    )
                return await self._settle(engine)
        finally:
            await engine.stop()
            engine.close()

    async def _settle(self, engine: WorkflowEngine) -> ExecutionState | None:
        while True:
            state = await self._unless_crashed(engine.wait_for(EXECUTION_ID))
            if state is None or not self._should_resume(state):
                return state
            inputs = self.plan.resume_inputs
            resumed = engine.resume_workflow(EXECUTION_ID, inputs, actor=RESUMING_ACTOR)
            if await self._unless_crashed(resumed) is None:
                return None
            self.resumes += 1

    def _should_resume(self, state: ExecutionState) -> bool:
        return (
            state.status is ExecutionStatus.PAUSED
            and state.paused_on is not None
            and self.plan.resume_inputs is not None
            and self.resumes < MAX_RESUMES
        )

    async def _unless_crashed(self, work: Awaitable[T]) -> T | None:
        """Await ``work``; None as soon as the store crashes (``work`` is then dropped)."""
        if not self._crashable:
            return await work
        task = asyncio.ensure_future(work)
        crash = asyncio.ensure_future(self.trace.crashed.wait())
        try:
            await asyncio.wait({task, crash}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            crash.cancel()
        if self.trace.crashed.is_set():
            if task.done() and not task.cancelled():
                task.exception()  # the crash itself, or what it caused: not a result
            return None
        try:
            return task.result()
        except InjectedCrash:  # pragma: no cover - the crash event is set first
            return None

    def _registry(self) -> ActionRegistry:
        registry = ActionRegistry()
        for name, fake in self.plan.fakes.items():
            registry.register(name, _bound(name, fake, self.trace))
        return registry


def _bound(name: str, fake: Fake, trace: RunTrace) -> Callable[..., Awaitable[Any]]:
    """Return the action that answers through ``fake`` and records its calls in ``trace``."""

    async def action(**parameters: Any) -> Any:
        call = trace.record_call(name, current_step_id() or "", parameters)
        return await fake.answer(call)

    action.__name__ = action.__qualname__ = f"fake_{name}"
    return action
