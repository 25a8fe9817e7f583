"""``check_workflow``: run a definition with fakes, crash it at every event, compare.

One check makes an uninterrupted reference run, then one run per crash point (crash
after event k, recover with a new engine), and, when the reference paused on a missing
input and was resumed, a run that has the input from the start. Each run has its own
SQLite file; every run is checked for replay, rest, repeats and rollback, and each
crashed or resumed run is compared with the reference.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flowledger.domain.definition import RetryPolicy, WorkflowDefinition
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.engine.retries import DEFAULT_RETRY_POLICY
from flowledger.testing._fakes import Fake, FakeCall
from flowledger.testing._properties import (
    CRASH,
    REPLAY,
    RESUME,
    ROLLBACK,
    check_at_rest,
    check_no_repeats,
    check_replay,
    check_rollback,
    check_same_outcome,
)
from flowledger.testing._runs import RunPlan, RunResult, execute
from flowledger.testing._setup import (
    Stores,
    as_definition,
    fakes_for,
    instant,
    without_retry_waits,
)

DEFAULT_TIMEOUT = 30.0
"""Seconds each engine of a run may take to bring the execution to rest."""


@dataclass(frozen=True)
class CrashPointResult:
    """One crash point of a check.

    Attributes:
        crash_after: The store kept events 1 to ``crash_after``, then crashed.
        crashed: False when the run needed no more events (the last point).
        events: Events in the history once recovered.
        calls: The fakes' calls, across the crashed and the recovering engine.
    """

    crash_after: int
    crashed: bool
    events: int
    calls: tuple[FakeCall, ...]


@dataclass(frozen=True)
class WorkflowCheckReport:
    """What a passing :func:`check_workflow` ran and found.

    Attributes:
        definition: The definition the engine ran (the given one, with retry waits
            removed unless ``instant_retries=False``).
        state: The final state of the uninterrupted run.
        history: The history of the uninterrupted run.
        calls: The fakes' calls in the uninterrupted run, in order.
        crash_points: Each crash point run, in order.
        skipped_crash_points: Points asked for beyond the uninterrupted history.
        resumed: The uninterrupted run paused on a missing input and was resumed.
        properties: The properties checked: ``"replay"``, ``"crash recovery"``,
            ``"rollback"`` (when the run rolled back), ``"resume"`` (when it resumed).
    """

    definition: WorkflowDefinition
    state: ExecutionState
    history: tuple[HistoryEntry, ...]
    calls: tuple[FakeCall, ...]
    crash_points: tuple[CrashPointResult, ...]
    skipped_crash_points: tuple[int, ...]
    resumed: bool
    properties: tuple[str, ...]

    @property
    def history_length(self) -> int:
        """Events in the uninterrupted run's history: the crash points are 1 to this."""
        return len(self.history)

    def call_count(self, action: str, step_id: str | None = None) -> int:
        """Calls of ``action`` (for ``step_id`` only, if given) in the uninterrupted run."""
        return sum(
            1
            for call in self.calls
            if call.action == action and (step_id is None or call.step_id == step_id)
        )


CrashPoints = Literal["all"] | Iterable[int]
"""``"all"`` (every event of the uninterrupted history) or chosen event numbers."""


async def check_workflow_async(
    definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
    fakes: Mapping[str, Fake | Callable[..., Any]],
    input: Mapping[str, Any] | None = None,
    *,
    resume_inputs: Mapping[str, Any] | None = None,
    crash_points: CrashPoints = "all",
    store_dir: str | Path | None = None,
    instant_retries: bool = True,
    retry_policy: RetryPolicy | None = None,
    max_concurrent_steps: int = 5,
    timeout: float = DEFAULT_TIMEOUT,
) -> WorkflowCheckReport:
    """Check a workflow's properties with fakes for its actions (see :func:`check_workflow`).

    The variant for code already running in an event loop (``async`` tests).
    """
    workflow = as_definition(definition)
    if instant_retries:
        workflow = without_retry_waits(workflow)
    policy = retry_policy or DEFAULT_RETRY_POLICY
    plan = RunPlan(
        definition=workflow,
        fakes=fakes_for(workflow, fakes),
        input=dict(input or {}),
        resume_inputs=None if resume_inputs is None else dict(resume_inputs),
        retry_policy=instant(policy) if instant_retries else policy,
        max_concurrent_steps=max_concurrent_steps,
        timeout=timeout,
    )
    with Stores(store_dir) as stores:
        return await _check(plan, crash_points, stores)


def check_workflow(
    definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
    fakes: Mapping[str, Fake | Callable[..., Any]],
    input: Mapping[str, Any] | None = None,
    *,
    resume_inputs: Mapping[str, Any] | None = None,
    crash_points: CrashPoints = "all",
    store_dir: str | Path | None = None,
    instant_retries: bool = True,
    retry_policy: RetryPolicy | None = None,
    max_concurrent_steps: int = 5,
    timeout: float = DEFAULT_TIMEOUT,
) -> WorkflowCheckReport:
    """Check a workflow's properties with fakes for its actions, crashing it at every event.

    Runs the definition once uninterrupted, then once per crash point k: the store keeps
    the execution's first k events and fails every later save, and a new engine
    recovers the execution on the same SQLite file. Checks that the stored history
    replays to the engine's state (``"replay"``), that every crashed run ends at rest
    with the uninterrupted run's status, outputs, step ends and error, with no recorded
    completion repeated (``"crash recovery"``), that compensations run once per
    completed step in reverse completion order (``"rollback"``), and that pausing on a
    missing input then resuming with ``resume_inputs`` ends as having them from the
    start (``"resume"``).

    Args:
        definition: The workflow (a definition, or what ``load_definition`` takes).
        fakes: A fake for each action the definition names (built-ins need none); a
            plain callable is called like an action and must be deterministic.
        input: The execution input.
        resume_inputs: Inputs to resume with when the execution pauses on a missing
            one (None: a paused execution stays paused, which is a valid end).
        crash_points: ``"all"``, or the event numbers to crash after; numbers beyond
            the uninterrupted history are skipped (and listed in the report).
        store_dir: Keep every run's SQLite file in a new directory under this one
            (default: a temporary directory, removed afterwards).
        instant_retries: Run with retry waits removed: the engine-wide policy and a
            copy of the definition whose steps' ``retry`` waits are 0 (attempt counts
            and ``non_retryable`` are kept). False runs the definition as given.
        retry_policy: The engine-wide policy of steps that declare none (default: the
            engine's).
        max_concurrent_steps: The engine's bound on steps running at once.
        timeout: Seconds each engine may take to bring the execution to rest.

    Returns:
        What was run and found.

    Raises:
        PropertyViolation: A property broke; its message names the property, the
            crash point and the difference.
        ValueError: An action of the definition has no fake.
        RuntimeError: Called inside a running event loop (await
            :func:`check_workflow_async` there).
    """
    if _loop_running():
        msg = "check_workflow cannot run inside an event loop: await check_workflow_async"
        raise RuntimeError(msg)
    return asyncio.run(
        check_workflow_async(
            definition,
            fakes,
            input,
            resume_inputs=resume_inputs,
            crash_points=crash_points,
            store_dir=store_dir,
            instant_retries=instant_retries,
            retry_policy=retry_policy,
            max_concurrent_steps=max_concurrent_steps,
            timeout=timeout,
        )
    )


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _check(plan: RunPlan, crash_points: CrashPoints, stores: Stores) -> WorkflowCheckReport:
    reference = await execute(plan, stores.new("reference"))
    history = _check_run(plan, reference, stores, every_version=True)
    checked = [REPLAY, CRASH]
    if any(entry.type == "RollbackStarted" for entry in history):
        checked.append(ROLLBACK)
    if reference.resumes:
        checked.append(RESUME)
        await _check_resume(plan, reference, stores)
    wanted = range(1, len(history) + 1) if crash_points == "all" else sorted(set(crash_points))
    results = []
    for point in (p for p in wanted if 1 <= p <= len(history)):
        run = await execute(plan, stores.new(f"crash-after-{point:04d}"), crash_after=point)
        recovered = _check_run(plan, run, stores, every_version=False)
        store = run.store if stores.kept else None
        check_same_outcome(reference.state, run.state, CRASH, crash_point=point, store=store)
        calls = tuple(run.trace.calls)
        results.append(CrashPointResult(point, run.crashed, len(recovered), calls))
    return WorkflowCheckReport(
        definition=plan.definition,
        state=reference.state,
        history=tuple(history),
        calls=tuple(reference.trace.calls),
        crash_points=tuple(results),
        skipped_crash_points=tuple(p for p in wanted if not 1 <= p <= len(history)),
        resumed=reference.resumes > 0,
        properties=tuple(checked),
    )


async def _check_resume(plan: RunPlan, paused: RunResult, stores: Stores) -> None:
    """Property 4: a run with the resume inputs from the start ends as the resumed one."""
    given = {**plan.input, **(plan.resume_inputs or {})}
    from_start = dataclasses.replace(plan, input=given, resume_inputs=None)
    run = await execute(from_start, stores.new("inputs-from-start"))
    _check_run(from_start, run, stores, every_version=False)
    store = run.store if stores.kept else None
    check_same_outcome(paused.state, run.state, RESUME, store=store)


def _check_run(
    plan: RunPlan, run: RunResult, stores: Stores, *, every_version: bool
) -> list[HistoryEntry]:
    """Check what holds for any single run; return its history."""
    point = run.crash_after
    store = run.store if stores.kept else None
    check_at_rest(run.state, run.timed_out, crash_point=point, store=store)
    history = check_replay(
        run.store,
        run.state.execution_id,
        run.state,
        saved=run.trace.stored,
        every_version=every_version,
        crash_point=point,
    )
    check_no_repeats(history, run.trace.entries, crash_point=point, store=store)
    check_rollback(history, plan.definition, run.state.status, crash_point=point, store=store)
    return history
