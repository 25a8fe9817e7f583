"""Invariants 2, 3 and 5 together: a crash at any event while operators pause and cancel.

``test_engine_crash`` crashes runs that receive no command, and ``test_engine_lifecycle``
issues commands to runs that never crash. Recovery and commands meet in real use (an
operator cancels an execution the engine was running when its process died), so this
property combines them. Each example runs a generated workflow (input present from the
start) on a real ``WorkflowEngine`` over a SQLite file whose store keeps the first k
events and fails every later save (``flowledger.testing.CrashingApplication``), while a
drawn schedule pauses it (resumed once it rests) and/or cancels it once its history
reaches a drawn event. After the crash a new engine (``recover=True``) takes over the
same file, and every command not yet recorded is issued once the history reaches its
event again (or once the execution rests first). One step runs at a time and the fakes
answer by step and recorded attempt, so the uninterrupted run without commands is the
one outcome to compare with.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import event, given, note
from hypothesis import strategies as st

from flowledger import (
    ActionRegistry,
    ExecutionState,
    ExecutionStatus,
    HistoryEntry,
    InvalidTransitionError,
    Ledger,
    StepStatus,
    WorkflowEngine,
    load_definition,
)
from flowledger.engine.invocation import current_step_id
from flowledger.testing import CrashingApplication, Fake, RunTrace, check_replay
from flowledger.testing._properties import (
    check_at_rest,
    check_no_repeats,
    check_rollback,
    check_same_outcome,
)
from flowledger.testing._setup import without_retry_waits
from tests.property.test_engine_crash import fakes_for
from tests.property.workflows import FAST_DEFAULT_RETRY, WorkflowRun, workflow_runs

EXECUTION_ID = "crashed-commanded"
OPERATOR = "operator"
WAIT = 30.0
"""Seconds one engine may take to bring the execution to rest (instead of hanging)."""

MAX_CRASH = 30
"""The latest event the store is crashed after (histories hold about 5 to 40 events)."""

MAX_COMMAND = 16
"""The latest event a command is drawn after: later ones mostly find the run ended."""


@dataclass(frozen=True)
class Schedule:
    """An operator's plan: pause after event ``pause_after`` (resumed once the execution
    rests, unless a cancel is still to come), cancel after event ``cancel_after``.

    A dataclass with plain fields so a failing example reads as what the operator did.
    """

    pause_after: int | None = None
    cancel_after: int | None = None
    rollback: bool = False


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    """Pause and resume; cancel (rolling back or not); or pause, then cancel no earlier."""
    kind = draw(st.sampled_from(["pause", "cancel", "pause then cancel"]))
    after = draw(st.integers(1, MAX_COMMAND))
    if kind == "pause":
        return Schedule(pause_after=after)
    rollback = draw(st.booleans())
    if kind == "cancel":
        return Schedule(cancel_after=after, rollback=rollback)
    return Schedule(after, after + draw(st.integers(0, 10)), rollback)


@dataclass
class _Command:
    kind: str  # "pause" or "cancel"
    after: int
    rollback: bool = False


@dataclass
class _Outcome:
    """What a driven run left: the engine's last word, and what became of each command."""

    state: ExecutionState
    accepted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)


class _Complaints(logging.Handler):
    """Keeps the warnings and errors the recovering engine logs: a sound recovery logs
    none (a crashed engine does: its runner stops on the injected store failure)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _Driver:
    """Drives the engines of one run through a crash, issuing the schedule's commands.

    Commands are issued from an engine listener (as tasks: a command awaited inside a
    save would wait for the runner that is waiting for that save) once the history
    reaches their event, or once the execution rests before that.
    """

    def __init__(self, run: WorkflowRun, url: str, schedule: Schedule) -> None:
        self.run = run
        self.url = url
        self.trace = RunTrace(asyncio.get_running_loop())
        self.fakes = fakes_for(run.behaviours)
        # Retry waits are real time: with one, whether a ready step runs while a failed
        # one waits for its retry depends on timing. Without them (as the kit runs),
        # one step at a time makes the order, so the outcome, unique.
        self.definition = without_retry_waits(load_definition(run.definition))
        self.pending: list[_Command] = []
        if schedule.pause_after is not None:
            self.pending.append(_Command("pause", schedule.pause_after))
        if schedule.cancel_after is not None:
            self.pending.append(_Command("cancel", schedule.cancel_after, schedule.rollback))
        self.outcome: _Outcome | None = None
        self.accepted: set[str] = set()
        self.refused: set[str] = set()
        self.unexpected: list[BaseException] = []
        self._lost: list[_Command] = []  # raised by the crash: recorded or not, we look
        self._tasks: list[asyncio.Task[None]] = []
        self._engine: WorkflowEngine | None = None
        self._app: CrashingApplication | None = None

    async def drive(self, crash_after: int | None) -> _Outcome:
        """Run until the execution rests; on a crash, recover with a new engine."""
        state = await self._engine_run(crash_after, start=True)
        if state is None:
            complaints = _Complaints()
            logging.getLogger("flowledger").addHandler(complaints)
            try:
                state = await self._engine_run(None, start=False)
            finally:
                logging.getLogger("flowledger").removeHandler(complaints)
            assert not complaints.messages, complaints.messages
        assert state is not None
        assert not self.unexpected, self.unexpected
        return _Outcome(state, self.accepted, self.refused)

    async def _engine_run(self, crash_after: int | None, *, start: bool) -> ExecutionState | None:
        """One engine's part: the state once at rest, or None when its store crashed."""
        self._app = CrashingApplication(self.url, trace=self.trace, crash_after=crash_after)
        engine = WorkflowEngine(
            application=self._app,
            actions=self._registry(),
            retry_policy=FAST_DEFAULT_RETRY,
            max_concurrent_steps=1,
        )
        self._engine = engine
        engine.add_listener(self._saved)
        try:
            async with asyncio.timeout(WAIT):
                await engine.start()  # recovers what a crashed engine left unfinished
                if start:
                    await engine.start_workflow(
                        self.definition, self.run.input, execution_id=EXECUTION_ID
                    )
                else:
                    self._take_stock(await asyncio.to_thread(self._history))
                    self._issue_due((await engine.get_workflow_status(EXECUTION_ID)).version)
                return await self._settle(engine)
        finally:
            if self._tasks:  # commands end soon after a crash: their saves fail at once
                await asyncio.wait(self._tasks, timeout=WAIT)
            await engine.stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            engine.close()

    async def _settle(self, engine: WorkflowEngine) -> ExecutionState | None:
        assert self._app is not None
        while True:
            # The runners' tasks (private, as in engine_runs): the engine's own ``wait_for``
            # reports PAUSED while the step in flight is still running.
            while busy := [t for t in (*engine._runners.tasks(), *self._tasks) if not t.done()]:
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
            if self._app.crashed:
                return None
            state = await engine.get_workflow_status(EXECUTION_ID)
            if self.pending:  # its event never came: the execution rested first
                self._issue(self.pending.pop(0))
            elif state.status is ExecutionStatus.PAUSED and "pause" in self.accepted:
                self._tasks.append(asyncio.create_task(self._resume(engine)))
            else:
                return state

    def _saved(self, entry: HistoryEntry) -> None:
        """The engine's listener: issue the commands due once this event is stored."""
        self._issue_due(entry.version)

    def _issue_due(self, version: int) -> None:
        while self.pending and self.pending[0].after <= version:
            self._issue(self.pending.pop(0))

    def _issue(self, command: _Command) -> None:
        self._tasks.append(asyncio.create_task(self._command(command)))

    async def _command(self, command: _Command) -> None:
        assert self._engine is not None and self._app is not None
        app = self._app
        try:
            if command.kind == "pause":
                await self._engine.pause_workflow(EXECUTION_ID, "property", actor=OPERATOR)
            else:
                await self._engine.cancel_workflow(
                    EXECUTION_ID, "property", actor=OPERATOR, rollback=command.rollback
                )
        except InvalidTransitionError:
            self.refused.add(command.kind)
        except (Exception, asyncio.CancelledError) as error:
            # After the crash a command may fail with it, or with its runner stopping:
            # whether it was recorded is read from the store before recovery.
            (self._lost.append(command) if app.crashed else self.unexpected.append(error))
        else:
            self.accepted.add(command.kind)

    async def _resume(self, engine: WorkflowEngine) -> None:
        assert self._app is not None
        try:
            await engine.resume_workflow(EXECUTION_ID, actor=OPERATOR)
        except (Exception, asyncio.CancelledError) as error:
            if not self._app.crashed:  # else recovery finds it PAUSED and it resumes again
                self.unexpected.append(error)
        else:
            self.accepted.add("resume")

    def _take_stock(self, history: list[HistoryEntry]) -> None:
        """Commands the crash interrupted count as issued if their event was stored."""
        recorded = {"pause": "ExecutionPaused", "cancel": "CancelRequested"}
        for command in self._lost:
            if any(e.type == recorded[command.kind] and _by_operator(e) for e in history):
                self.accepted.add(command.kind)
            else:
                self.pending.append(command)
        self._lost.clear()
        self.pending.sort(key=lambda command: command.after)

    def _history(self) -> list[HistoryEntry]:
        assert self._engine is not None
        return self._engine.ledger.history(EXECUTION_ID)

    def _registry(self) -> ActionRegistry:
        """The fakes as actions, each call noted in the run's trace (as the kit does)."""
        registry = ActionRegistry()
        for name, fake in self.fakes.items():
            registry.register(name, _bound(name, fake, self.trace))
        return registry


def _by_operator(entry: HistoryEntry) -> bool:
    return entry.data.get("actor") == OPERATOR


def _bound(name: str, fake: Fake, trace: RunTrace) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def action(**parameters: Any) -> Any:
        return await fake.answer(trace.record_call(name, current_step_id() or "", parameters))

    action.__name__ = f"fake_{name}"
    return action


@contextmanager
def _store(name: str) -> Iterator[str]:
    """A SQLite file of its own for one run (each example runs two), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="flowledger-crash-commands-") as directory:
        yield f"sqlite:///{Path(directory) / name}.db"


def _completed_outputs(history: list[HistoryEntry]) -> dict[str, Any]:
    return {e.step_id or "": e.data["output"] for e in history if e.type == "StepCompleted"}


def _expected_cancel_ends(
    history: list[HistoryEntry], run: WorkflowRun, rollback: bool
) -> set[ExecutionStatus]:
    """How an accepted cancel may end.

    CANCELLED; when a rollback was asked and a step that declares ``compensate``
    completed, ROLLED_BACK or ROLLBACK_FAILED; and when a failure's rollback was
    already under way (RollbackStarted before CancelRequested), it goes on: a cancel
    takes precedence over a failure, not over a rollback under way (planning.py).
    """
    types = [entry.type for entry in history]
    rolling = {ExecutionStatus.ROLLED_BACK, ExecutionStatus.ROLLBACK_FAILED}
    if "RollbackStarted" in types and types.index("RollbackStarted") < types.index(
        "CancelRequested"
    ):
        return rolling
    compensable = {step.id for step in run.shape.steps if step.compensate}
    if rollback and compensable & set(_completed_outputs(history)):
        return rolling
    return {ExecutionStatus.CANCELLED}


async def _example(run: WorkflowRun, schedule: Schedule, crash_after: int) -> None:
    with _store("reference") as url:
        reference = await _Driver(run, url, Schedule()).drive(None)
        reference_history = await asyncio.to_thread(_read_history, url)
    with _store("crashed") as url:
        driver = _Driver(run, url, schedule)
        found = await driver.drive(crash_after)
        state = found.state
        # Invariant 1: the store replays to the state the (last) engine reported.
        history = await asyncio.to_thread(
            check_replay, url, EXECUTION_ID, state, saved=driver.trace.stored
        )
    # What the examples covered (shown by --hypothesis-show-statistics).
    event(f"crashed: {driver.trace.crashed.is_set()}")
    event(f"accepted: {sorted(found.accepted)}, refused: {sorted(found.refused)}")
    event(f"ended {state.status.value}")
    note(f"reference: {_summary(reference_history)}")
    note(f"crashed:   {_summary(history)} (commands accepted {sorted(found.accepted)})")
    # At rest, and no recorded completion (or compensation) repeated, in the history or
    # by a fake called after it; invariant 3 on whatever rolled back.
    check_at_rest(state, timed_out=False)
    busy = {StepStatus.RUNNING, StepStatus.COMPENSATING}
    assert not [s for s in state.steps.values() if s.status in busy], state.steps
    # Every pause is resumed by the driver, and no input is missing: it ends terminal.
    assert state.status.is_terminal, state.status
    check_no_repeats(history, driver.trace.entries)
    check_rollback(history, driver.definition, state.status)
    # One step at a time, deterministic fakes: a step that completed saw the same
    # upstream outputs and attempt as in the reference, so it returned the same output.
    outputs, expected_outputs = _completed_outputs(history), _completed_outputs(reference_history)
    assert set(outputs) <= set(expected_outputs), (outputs, expected_outputs)
    assert outputs == {step: expected_outputs[step] for step in outputs}
    if schedule.cancel_after is None or "cancel" in found.refused:
        # A pause only delays (no exclusion is needed: with one step at a time, the
        # step in flight when the pause lands finishes and is recorded exactly as it
        # would have been, and a failure it causes is handled after the resume, as
        # without the pause). The one case where timing would make it differ, a ready
        # step running or not while a failed one waits for its retry, is removed by
        # running without retry waits (see _Driver). A refused cancel found the
        # execution ended.
        check_same_outcome(reference.state, state, "pause/cancel")
    else:
        assert "cancel" in found.accepted, (found.accepted, found.refused)
        assert [e.type for e in history].count("CancelRequested") == 1
        assert state.status in _expected_cancel_ends(history, run, schedule.rollback)


def _summary(history: list[HistoryEntry]) -> str:
    """The history in one line, for the notes of a failing example."""
    return " ".join(f"{e.version}:{e.type}({e.step_id or ''})" for e in history)


def _read_history(url: str) -> list[HistoryEntry]:
    with Ledger(url) as ledger:
        return ledger.history(EXECUTION_ID)


@given(
    run=workflow_runs(input_missing=False),
    schedule=schedules(),
    crash_after=st.integers(1, MAX_CRASH),
)
def test_a_crash_amid_pauses_and_cancels_then_recovery_keeps_every_invariant(
    run: WorkflowRun, schedule: Schedule, crash_after: int
) -> None:
    """Crash after event ``crash_after`` (past the end: no crash) while the schedule's
    commands are issued; recover; the run must end at rest, replay to the engine's
    state, repeat no completion, roll back correctly, end as the command-free run
    after a pause or a refused cancel, and end CANCELLED (or rolled back) after an
    accepted cancel, with every output it recorded equal to the reference's.
    """
    asyncio.run(_example(run, schedule, crash_after))
