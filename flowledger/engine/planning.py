"""The planner: what happens next to an execution, as a pure function of its state.

The engine drives each execution in a loop: :func:`plan`, apply the decisions
(:meth:`~flowledger.engine.decisions.Plan.apply`), save, run the actions the decisions
started, record their outcomes, and plan again. This module is the first step only: it
reads the execution and its definition and returns values. It records nothing, reads no
clock (``now`` is an argument), makes no ids and does no I/O. Planning the same state
twice gives equal plans, and planning again after applying a plan repeats no decision
(and decides nothing at all, unless the plan says ``replan``).

The rules (DESIGN.md, "Semantics decided"):

- **Edges.** Every ``depends_on`` entry is an incoming edge, *resolved* once its source
  is at rest (COMPLETED, SKIPPED, CANCELLED, or FAILED with no retry pending) and
  *active* when its source COMPLETED (or FAILED with ``continue_on_error``) and its
  condition, if any, holds.
- **Deciding.** A PENDING step is decided once all its incoming edges are resolved:
  every condition on an edge whose source completed or failed is evaluated and recorded;
  with no active edge the step is skipped (``branch_not_taken``); otherwise its own
  condition is evaluated and recorded (false skips it: ``condition_false``) and it
  starts. Decisions take effect within the plan, so a chain of skips, or a trigger and
  the steps after it, is decided at once.
- **Starting** resolves the step's parameters; a missing value pauses the step and, as
  the plan's last decision, the execution. A trigger completes at once with the
  execution input as its output. Steps left PAUSED start again after a resume, FAILED
  steps whose retry is due (``not_before <= now``) start their next attempt, and
  interrupted steps (see :func:`plan`) start again.
- **Failure.** A step FAILED with no retry pending and no ``continue_on_error``, or a
  condition that cannot be evaluated, fails the execution: nothing new starts; once no
  step is in flight, the steps that never ran are cancelled (``execution_failed``) and
  the completed steps that declare ``compensate`` are compensated one at a time, last
  completed first; with none, the execution fails, naming the step that failed first.
- **Rollback** compensates one step at a time and waits while one is COMPENSATING; a
  failed compensation, or compensation parameters that cannot be resolved, ends it
  ROLLBACK_FAILED (a rollback cannot pause for input).
- **Cancel** takes precedence over a failure (not over a rollback under way): nothing
  new starts; once no step is in flight, the steps that never ran are cancelled
  (``cancelled``) and the execution ends CANCELLED, or rolls back if that was asked.
- **Pause.** While PAUSED nothing is decided (steps in flight finish and are recorded
  meanwhile) unless a cancel was requested; a failure is handled after the resume.
- A FAILED step waiting for its retry is cancelled (``FAILED -> CANCELLED``) when the
  execution fails or is cancelled; its retry never starts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowledger.domain.definition import WorkflowDefinition, load_definition
from flowledger.domain.execution import Execution
from flowledger.domain.execution_state import aware
from flowledger.domain.references import resolve_references
from flowledger.domain.state import ExecutionState, StepState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.decisions import (
    CancelExecution,
    CancelStep,
    CompensateStep,
    Decision,
    FailExecution,
    FailRollback,
    FinishRollback,
    Plan,
    StartRollback,
)
from flowledger.engine.frontier import RecordedSteps, frontier_of
from flowledger.engine.scheduling import ReferenceContext, Scheduler, StepResults, StepSource
from flowledger.errors import ConditionError, MissingInputError, UnavailableOutputError

__all__ = [
    "CANCELLED",
    "EXECUTION_FAILED",
    "DefinitionCache",
    "definition_of",
    "plan",
    "remember_definition",
]

CANCELLED = "cancelled"
"""Why the steps that never ran are cancelled, and a rollback started, on a cancel."""
EXECUTION_FAILED = "execution_failed"
"""Why the steps that never ran are cancelled when the execution fails."""

_RUNNING = StepStatus.RUNNING.value
_OPEN = frozenset({StepStatus.PENDING.value, StepStatus.PAUSED.value})


def plan(
    execution: Execution,
    definition: WorkflowDefinition,
    now: datetime,
    *,
    max_starts: int | None = None,
    interrupted: Collection[str] = (),
) -> Plan:
    """Decide what happens next to ``execution``.

    Args:
        execution: The execution, as loaded or as left by the previous decisions.
        definition: The definition it runs (see :func:`definition_of`).
        now: The current time (timezone-aware); retries due by then start.
        max_starts: At most this many steps are started (None: no limit). A step
            beyond the limit is left as it is, with nothing recorded for it, so a later
            plan decides it whole; skips, pauses and triggers are not limited.
        interrupted: RUNNING steps whose attempt is no longer running (recorded with
            ``interrupt_step`` after a crash, not yet started again); other ids are
            ignored. They start again, or are cancelled when the execution is being
            cancelled or is failing.

    Returns:
        The plan; it decides nothing for a terminal execution, or for a PAUSED one that
        is not being cancelled.

    Raises:
        ValueError: ``now`` is naive, or ``definition`` is not the one the execution runs.
    """
    aware(now, "now")
    if definition.hash != execution.definition_hash:
        msg = f"definition {definition.hash[:12]} is not the one execution"
        raise ValueError(
            f"{msg} {execution.execution_id!r} runs ({execution.definition_hash[:12]})"
        )
    status = execution.status
    if status.is_terminal:
        return Plan()
    frontier = frontier_of(execution, definition)
    with frontier.lock:
        frontier.refresh(execution)
        steps = RecordedSteps(execution, frontier)
        return _plan(steps, definition, now, status, max_starts=max_starts, interrupted=interrupted)


def _plan(
    steps: RecordedSteps,
    definition: WorkflowDefinition,
    now: datetime,
    status: ExecutionStatus,
    *,
    max_starts: int | None,
    interrupted: Collection[str],
) -> Plan:
    """Plan a non-terminal execution (see :func:`plan`), reading its steps through ``steps``."""
    execution, frontier = steps.execution, steps.frontier
    restart = frozenset(
        step_id for step_id in interrupted if frontier.status.get(step_id) == _RUNNING
    )
    in_flight = tuple(frontier.in_order(frontier.in_flight - restart))
    if status is ExecutionStatus.ROLLING_BACK:
        if in_flight:
            return Plan(in_flight=in_flight)
        return _rollback(execution, steps, definition, max_starts)
    if execution.cancel_requested:
        ending = _cancel(execution)
    elif status is not ExecutionStatus.RUNNING:
        return Plan(in_flight=in_flight)  # PAUSED: nothing starts until it resumes
    else:
        ending_or_plan = _failure(steps) or _schedule(
            Scheduler(steps, definition, now, restart, max_starts), in_flight
        )
        if isinstance(ending_or_plan, Plan):
            return ending_or_plan
        ending = ending_or_plan
    if in_flight:
        return Plan(in_flight=in_flight)
    return _wind_down(execution, steps, definition, restart, ending, max_starts=max_starts)


@dataclass(frozen=True)
class _Ending:
    """How a failing or cancelled execution ends, once nothing is in flight.

    Attributes:
        step_reason: Why the steps that never ran are cancelled.
        rolls_back: Whether completed compensable steps are compensated.
        reason: Why the rollback starts.
        last: The final decision when there is nothing to compensate.
    """

    step_reason: str
    rolls_back: bool
    reason: str
    last: Decision


def _cancel(execution: Execution) -> _Ending:
    return _Ending(CANCELLED, execution.cancel_rolls_back, CANCELLED, CancelExecution())


def _failure(steps: RecordedSteps) -> _Ending | None:
    """Return how the execution fails, or None when no step failed it."""
    frontier = steps.frontier
    if not frontier.failed:
        return None
    failed = [steps.step(step_id) for step_id in frontier.in_order(frontier.failed)]
    # The first to fail is the cause; the others failed while in-flight steps finished.
    first = min(failed, key=_finished_at)
    error = _error_of(first)
    reason = f"step {first.step_id!r} failed: {error['message']}"
    return _Ending(EXECUTION_FAILED, True, reason, FailExecution(first.step_id, error))


def _schedule(scheduler: Scheduler, in_flight: tuple[str, ...]) -> Plan | _Ending:
    """Run the scheduler's pass; a condition or reference that fails it ends the execution.

    The steps decided before the failure are recorded first (the branches that led to
    it): the next plan, asked for by ``replan``, meets the same failure with them applied.
    """
    try:
        return scheduler.plan(in_flight)
    except (ConditionError, UnavailableOutputError) as error:
        if scheduler.decided:
            decided = tuple(scheduler.decisions[: scheduler.decided])
            return Plan(decided, None, in_flight, replan=True)
        target = error.step_id if isinstance(error, UnavailableOutputError) else error.target
        return _failure_at(str(target), error)


def _failure_at(target: str, error: ConditionError | UnavailableOutputError) -> _Ending:
    """The execution fails because of ``target``'s definition, not its action."""
    data = {"type": type(error).__name__, "message": str(error), "retryable": False}
    return _Ending(EXECUTION_FAILED, True, str(error), FailExecution(target, data))


def _finished_at(step: StepState) -> datetime:
    assert step.finished_at is not None  # a step at rest records when it got there
    return step.finished_at


def _error_of(step: StepState) -> dict[str, Any]:
    assert step.error is not None  # a failed step or compensation records its error
    return step.error


def _wind_down(
    execution: Execution,
    steps: RecordedSteps,
    definition: WorkflowDefinition,
    interrupted: frozenset[str],
    ending: _Ending,
    *,
    max_starts: int | None,
) -> Plan:
    """Cancel the steps that never ran (nothing is in flight), then roll back or end.

    The first compensation needs a slot: without one, the rollback starts and the
    compensation is withheld for the next plan.
    """
    frontier = steps.frontier
    decisions: list[Decision] = [
        CancelStep(step_id, ending.step_reason)
        for step_id, status in frontier.status.items()
        if status in _OPEN or step_id in interrupted or step_id in frontier.not_before
    ]
    to_compensate = execution.steps_to_compensate() if ending.rolls_back else []
    if to_compensate:
        last = ending.last
        cause = (last.step_id, last.error) if isinstance(last, FailExecution) else (None, None)
        decisions.append(StartRollback(ending.reason, *cause))
        if max_starts is not None and max_starts <= 0:
            return Plan(tuple(decisions), withheld=True)
        decisions.append(compensation_decision(to_compensate[0], steps, definition))
    else:
        decisions.append(ending.last)
    return Plan(tuple(decisions))


def _rollback(
    execution: Execution,
    steps: RecordedSteps,
    definition: WorkflowDefinition,
    max_starts: int | None,
) -> Plan:
    """Compensate the next step (given a slot), or end the rollback (nothing in flight)."""
    failed = steps.frontier.compensation_failed
    if failed:
        step_id = steps.frontier.in_order(failed)[0]
        return Plan((FailRollback(step_id, _error_of(steps.step(step_id))),))
    to_compensate = execution.steps_to_compensate()
    if not to_compensate:
        return Plan((FinishRollback(),))
    decision = compensation_decision(to_compensate[0], steps, definition)
    if isinstance(decision, CompensateStep) and max_starts is not None and max_starts <= 0:
        return Plan(withheld=True)
    return Plan((decision,))


def compensation_decision(
    step_id: str, steps: ExecutionState | StepSource, definition: WorkflowDefinition
) -> Decision:
    """Return the decision compensating ``step_id``: its action and resolved parameters.

    ``steps`` is the execution's state (or a source of its steps). A missing parameter
    value fails the rollback instead (a rollback cannot pause).
    """
    compensate = definition.step(step_id).compensate
    assert compensate is not None  # only steps that declare one are compensated
    context = ReferenceContext(steps, StepResults(steps))
    try:
        parameters = resolve_references(compensate.parameters, context)
    except MissingInputError as error:
        # A rollback cannot pause for input: only a RUNNING execution pauses.
        data = {"type": type(error).__name__, "message": str(error), "retryable": False}
        return FailRollback(step_id, data)
    return CompensateStep(step_id, compensate.action, parameters)


class DefinitionCache:
    """The definitions executions run, loaded once per definition hash.

    Loading and checking a definition takes milliseconds (over 100 for a thousand
    steps); every execution records its own, and many run the same one. Thread-safe;
    the least recently used definition is dropped first.
    """

    def __init__(self, size: int = 64) -> None:
        """Keep at most ``size`` definitions."""
        self._size = size
        self._definitions: OrderedDict[str, WorkflowDefinition] = OrderedDict()
        self._lock = threading.Lock()

    def definition_of(self, execution: Execution) -> WorkflowDefinition:
        """Return the definition ``execution`` runs, loading it from its history once."""
        key = execution.definition_hash
        with self._lock:
            found = self._definitions.get(key)
            if found is not None:
                self._definitions.move_to_end(key)
                return found
        # Loaded outside the lock, so one slow load does not hold up every thread; two
        # threads may load the same definition, and they agree.
        definition = load_definition(execution.definition_dict())
        self._keep(definition)
        return definition

    def add(self, definition: WorkflowDefinition) -> None:
        """Cache a definition loaded elsewhere, such as the one an execution starts with.

        The engine that loaded it to start an execution saves its runner a second load.

        Raises:
            ValueError: ``definition.hash`` is not the hash of its canonical form.
        """
        if definition.canonical()[1] != definition.hash:
            msg = f"definition {definition.id!r} has a hash that is not of its canonical form"
            raise ValueError(msg)
        self._keep(definition)

    def _keep(self, definition: WorkflowDefinition) -> None:
        with self._lock:
            self._definitions[definition.hash] = definition
            self._definitions.move_to_end(definition.hash)
            while len(self._definitions) > self._size:
                self._definitions.popitem(last=False)

    def __len__(self) -> int:
        """Return how many definitions are cached."""
        return len(self._definitions)

    def __contains__(self, definition_hash: object) -> bool:
        """Return True when the definition with this hash is cached."""
        return definition_hash in self._definitions


_DEFINITIONS = DefinitionCache()


def definition_of(execution: Execution) -> WorkflowDefinition:
    """Return the definition ``execution`` runs, from a process-wide cache by hash."""
    return _DEFINITIONS.definition_of(execution)


def remember_definition(definition: WorkflowDefinition) -> None:
    """Put a loaded definition in the cache :func:`definition_of` reads (see ``add``)."""
    _DEFINITIONS.add(definition)
