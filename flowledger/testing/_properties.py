"""The properties the kit checks, each raising :class:`PropertyViolation` when it fails.

Each check reads what a run left behind — the store, read back by a fresh ``Ledger``,
and the run's trace of stored events and fake calls — and compares it with what the
invariants of DESIGN.md promise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.event_catalogue import TERMINAL_EVENTS
from flowledger.domain.events import ExecutionEvent, StepCompleted, StepRolledBack
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.ledger import Ledger
from flowledger.errors import FlowledgerError
from flowledger.testing._crash import TraceEntry
from flowledger.testing._differences import difference
from flowledger.testing._fakes import FakeCall

REPLAY = "replay"
"""Property 1: the state rebuilt from the stored events is the state the engine had."""

CRASH = "crash recovery"
"""Property 2: a crash at any event, then recovery, ends as the uninterrupted run."""

ROLLBACK = "rollback"
"""Property 3: compensation once per completed step, in reverse completion order."""

RESUME = "resume"
"""Property 4: pausing on an input and resuming with it ends as having it from the start."""


class PropertyViolation(AssertionError):
    """A workflow broke one of the properties the kit checks.

    Attributes:
        property_name: ``"replay"``, ``"crash recovery"``, ``"rollback"`` or ``"resume"``.
        detail: What differed, or what happened that must not.
        crash_point: The event after which the store crashed, for a crashed run.
        store: The URL of the run's store (it is kept only when the check was given a
            ``store_dir``).
    """

    def __init__(
        self,
        property_name: str,
        detail: str,
        *,
        crash_point: int | None = None,
        store: str | None = None,
    ) -> None:
        self.property_name = property_name
        self.detail = detail
        self.crash_point = crash_point
        self.store = store
        where = "" if crash_point is None else f" (crash after event {crash_point})"
        kept = "" if store is None else f"\nstore: {store}"
        super().__init__(f"property {property_name!r} violated{where}: {detail}{kept}")


# -- property 1: replay -------------------------------------------------------------------


def check_replay(
    store: str,
    execution_id: str,
    expected: ExecutionState | None = None,
    *,
    saved: Sequence[ExecutionEvent] | None = None,
    every_version: bool = True,
    crash_point: int | None = None,
) -> list[HistoryEntry]:
    """Check that the store gives back the state that was saved; return the history.

    A fresh ``Ledger`` opens ``store``: the history must verify against its hash chain,
    the loaded state must equal ``expected``, and the state at each version must equal
    the one the events build when replayed in memory (the events as they were saved,
    when given, else as they are stored).

    Args:
        store: The store URL.
        execution_id: The execution to check.
        expected: The state the engine reported last (None: not compared).
        saved: The events as they were saved, in order (None: not compared).
        every_version: Compare every version, not only the last.
        crash_point: For the message of a violation.

    Raises:
        PropertyViolation: ``"replay"`` broke.
    """

    def violation(detail: str) -> PropertyViolation:
        return PropertyViolation(REPLAY, detail, crash_point=crash_point, store=store)

    with Ledger(store) as ledger:
        try:
            report = ledger.verify(execution_id)
            if not report.ok:
                problems = "; ".join(str(problem.to_dict()) for problem in report.problems)
                raise violation(f"the stored history does not verify: {problems}")
            loaded = ledger.get(execution_id)
            history = ledger.history(execution_id)
            mismatch = _replay_mismatch(ledger, execution_id, saved, every_version)
        except FlowledgerError as error:
            raise violation(f"the stored history cannot be read back: {error}") from error
    if mismatch is not None:
        raise violation(mismatch)
    if expected is not None and loaded != expected:
        raise violation(
            f"the state loaded from the store differs from the engine's: "
            f"{difference(expected, loaded)}"
        )
    return history


def _replay_mismatch(
    ledger: Ledger,
    execution_id: str,
    saved: Sequence[ExecutionEvent] | None,
    every_version: bool,
) -> str | None:
    """Compare the states loaded at each version with the states the events build."""
    app = ledger.application
    events = saved if saved is not None else app.read_events(execution_id)
    latest = ledger.get(execution_id).version
    if latest != len(events):
        return f"the store holds {latest} events, {len(events)} were saved"
    for version in range(1, latest + 1) if every_version else [latest]:
        loaded = ledger.get(execution_id, version=version)
        rebuilt = app.rebuild(execution_id, events[:version]).state()
        if loaded != rebuilt:
            return (
                f"the state loaded at version {version} differs from the state its events"
                f" build: {difference(rebuilt, loaded)}"
            )
    return None


# -- property 2: crash recovery -----------------------------------------------------------


def outcome(state: ExecutionState) -> dict[str, Any]:
    """What a crash must not change: status, outputs, each step's end, and the error."""
    error = state.error
    return {
        "status": state.status.value,
        "outputs": state.outputs,
        "steps": {
            step_id: {"status": step.status.value, "attempts": step.attempts}
            for step_id, step in state.steps.items()
        },
        "compensations": {
            step_id: step.compensation_output
            for step_id, step in state.steps.items()
            if step.compensation_output is not None
        },
        "error": None if error is None else {"type": error["type"], "message": error["message"]},
    }


def check_same_outcome(
    expected: ExecutionState,
    found: ExecutionState,
    property_name: str,
    *,
    crash_point: int | None = None,
    store: str | None = None,
) -> None:
    """Check that two runs ended alike (see :func:`outcome`).

    Raises:
        PropertyViolation: ``property_name`` broke: the outcomes differ.
    """
    before, after = outcome(expected), outcome(found)
    if before != after:
        detail = f"the outcome differs from the reference run's: {difference(before, after)}"
        raise PropertyViolation(property_name, detail, crash_point=crash_point, store=store)


def check_at_rest(
    state: ExecutionState,
    timed_out: bool,
    *,
    crash_point: int | None = None,
    store: str | None = None,
) -> None:
    """Check that the execution ended terminal or paused.

    Raises:
        PropertyViolation: ``"crash recovery"`` broke.
    """
    if timed_out or not (state.status.is_terminal or state.status is ExecutionStatus.PAUSED):
        how = " (the engine did not bring it to rest in time)" if timed_out else ""
        detail = f"the execution ended {state.status.value}, not terminal or paused{how}"
        raise PropertyViolation(CRASH, detail, crash_point=crash_point, store=store)


def check_no_repeats(
    history: Sequence[HistoryEntry],
    trace: Sequence[TraceEntry],
    *,
    crash_point: int | None = None,
    store: str | None = None,
) -> None:
    """Check that no recorded completion was repeated, in the history or by a fake.

    Each step completes (and is rolled back) at most once, a terminal execution has one
    terminal event and it is the last, and no action is called for a step once the
    step's completion (or compensation) is stored.

    Raises:
        PropertyViolation: ``"crash recovery"`` broke.
    """
    problems = _repeated_events(history) + _calls_after_completion(trace)
    if problems:
        detail = "; ".join(problems)
        raise PropertyViolation(CRASH, detail, crash_point=crash_point, store=store)


def _repeated_events(history: Sequence[HistoryEntry]) -> list[str]:
    completions = Counter(e.step_id for e in history if e.type == "StepCompleted")
    rollbacks = Counter(e.step_id for e in history if e.type == "StepRolledBack")
    problems = [f"step {s!r} completed {n} times" for s, n in completions.items() if n > 1]
    problems += [f"step {s!r} rolled back {n} times" for s, n in rollbacks.items() if n > 1]
    ends = [e for e in history if e.type in TERMINAL_EVENTS]
    if len(ends) > 1 or (ends and ends[0] is not history[-1]):
        names = ", ".join(f"{e.type} (event {e.version})" for e in ends)
        problems.append(f"terminal events {names} of {len(history)} events")
    return problems


def _calls_after_completion(trace: Sequence[TraceEntry]) -> list[str]:
    completed: set[str] = set()
    rolled_back: set[str] = set()
    problems: list[str] = []
    for entry in trace:
        if isinstance(entry, StepCompleted):
            completed.add(entry.step_id)
        elif isinstance(entry, StepRolledBack):
            rolled_back.add(entry.step_id)
        elif isinstance(entry, FakeCall):
            done = rolled_back if entry.compensation else completed
            if entry.step_id in done:
                what = "compensation" if entry.compensation else "completion"
                problems.append(
                    f"action {entry.action!r} was called for step {entry.step_id!r}"
                    f" (call {entry.invocation}) after its {what} was recorded"
                )
    return problems


# -- property 3: rollback -----------------------------------------------------------------


def check_rollback(
    history: Sequence[HistoryEntry],
    definition: WorkflowDefinition,
    status: ExecutionStatus,
    *,
    crash_point: int | None = None,
    store: str | None = None,
) -> None:
    """Check compensation: once per completed compensable step, in reverse completion order.

    Compensations run one at a time, and a failed one ends the rollback: so the steps
    whose compensation started are the first of the completed compensable steps, last
    completed first, and an execution that ends ROLLED_BACK compensated all of them.

    Raises:
        PropertyViolation: ``"rollback"`` broke.
    """
    completed = [e.step_id for e in history if e.type == "StepCompleted" and e.step_id]
    expected = [step_id for step_id in reversed(completed) if definition.step(step_id).compensate]
    started = [e.step_id for e in history if e.type == "CompensationStarted"]
    rolled_back = [e.step_id for e in history if e.type == "StepRolledBack"]
    rolling_back = any(e.type == "RollbackStarted" for e in history)
    problems: list[str] = []
    if started and not rolling_back:
        problems.append(f"steps {started} were compensated without a rollback")
    if started != expected[: len(started)]:
        problems.append(
            f"compensations started for {started}; the completed compensable steps,"
            f" last completed first, are {expected}"
        )
    if rolled_back != started[: len(rolled_back)]:
        problems.append(f"steps rolled back {rolled_back}, compensations started {started}")
    if status is ExecutionStatus.ROLLED_BACK and rolled_back != expected:
        problems.append(f"the execution is ROLLED_BACK with {rolled_back}, not {expected}")
    if problems:
        raise PropertyViolation(ROLLBACK, "; ".join(problems), crash_point=crash_point, store=store)
