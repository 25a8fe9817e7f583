"""One planning pass over a RUNNING execution that is neither failing nor cancelled.

:func:`flowledger.engine.planning.plan` hands this pass the execution's steps, read
through their :class:`~flowledger.engine.frontier.Frontier`, when there is new work to
decide: steps whose incoming edges are all resolved, steps to start again (PAUSED, retry
due, interrupted), and completion. The rules are in the module docstring of
:mod:`flowledger.engine.planning`.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowledger.domain.conditions import compile_condition, evaluate_condition
from flowledger.domain.definition import Dependency, StepDefinition, WorkflowDefinition
from flowledger.domain.operator_events import SKIPPED_BY_OPERATOR
from flowledger.domain.references import plain_copy, resolve_references
from flowledger.domain.status import StepStatus
from flowledger.engine.decisions import (
    CompleteExecution,
    CompleteTrigger,
    Decision,
    PauseExecution,
    PauseStep,
    Plan,
    RecordCondition,
    SkipStep,
    StartStep,
)
from flowledger.engine.frontier import RecordedSteps
from flowledger.engine.step_results import ReferenceContext, StepResults, StepSource
from flowledger.errors import ConditionError, MissingInputError, UnavailableOutputError

_QUIET = (RecordCondition, SkipStep, CompleteTrigger)
"""Decisions with no side effect: kept when a later step fails the pass."""

BRANCH_NOT_TAKEN = "branch_not_taken"
"""Why a step none of whose incoming edges is active is skipped."""
CONDITION_FALSE = "condition_false"
"""Why a step whose own condition is false is skipped."""

__all__ = [
    "BRANCH_NOT_TAKEN",
    "CONDITION_FALSE",
    "ReferenceContext",
    "Scheduler",
    "StepResults",
    "StepSource",
]

# Plain strings: step results hold them, and conditions compare them with literals.
_PENDING = StepStatus.PENDING.value
_RUNNING = StepStatus.RUNNING.value
_COMPLETED = StepStatus.COMPLETED.value
_FAILED = StepStatus.FAILED.value
_PAUSED = StepStatus.PAUSED.value
_SKIPPED = StepStatus.SKIPPED.value
_RESTING = frozenset({_COMPLETED, _SKIPPED, StepStatus.CANCELLED.value})
_PAUSABLE = frozenset({_PENDING, _RUNNING})  # RUNNING: an interrupted step


class Scheduler:
    """Decides the steps of one execution in topological order, in one pass.

    Decisions take effect as they are made, so later steps see earlier decisions of
    the same plan: a skipped step resolves its downstream edges, a trigger's output is
    there for the conditions after it.

    Only the steps that may have something to decide are visited: those the frontier
    names (PENDING with every incoming edge resolved, PAUSED, waiting for a retry),
    the interrupted ones, and the steps downstream of a step this pass brings to rest.
    Every other step would be passed over by the rules, so the decisions, and their
    order, are those of a visit of every step.
    """

    def __init__(
        self,
        steps: RecordedSteps,
        definition: WorkflowDefinition,
        now: datetime,
        interrupted: frozenset[str] = frozenset(),
        max_starts: int | None = None,
    ) -> None:
        """Prepare a pass; see :func:`flowledger.engine.planning.plan` for the arguments."""
        self.steps = steps
        self.definition = definition
        self.now = now
        self.interrupted = interrupted
        self.starts_left = max_starts
        self.results = StepResults(steps)
        self.context = ReferenceContext(steps, self.results)
        self.decisions: list[Decision] = []
        self.decided = 0
        """How many of ``decisions`` only record conditions and skips, from the first
        step on: the ones to keep when a later step's condition or reference fails the
        pass (the branches that led to the failure; nothing new starts)."""
        self.pause: PauseExecution | None = None
        self.wake_at: datetime | None = None
        self.withheld = False
        """True once a start was due but no start was left in this plan."""
        frontier = steps.frontier
        self._order = frontier.order
        self._restless = frontier.restless
        self._queued = {
            self._order[step_id]
            for kind in (frontier.ready, frontier.paused, frontier.not_before, interrupted)
            for step_id in kind
        }
        self._queue = list(self._queued)  # positions in topological order, as a heap
        heapq.heapify(self._queue)

    def plan(self, in_flight: tuple[str, ...]) -> Plan:
        """Visit the steps with something to decide; then pause or complete if due.

        Raises:
            ConditionError: A condition could not be evaluated.
            UnavailableOutputError: A step's parameters reference a result that does
                not exist.
        """
        steps, queue, status_of = self.definition.steps, self._queue, self.results.status
        quiet = True
        while queue:
            step = steps[heapq.heappop(queue)]
            if quiet and len(self.decisions) > self.decided:
                made = self.decisions[self.decided :]
                # A trigger runs no action: completing it is as safe to keep as a skip.
                quiet = all(isinstance(d, _QUIET) for d in made)
                self.decided += len(made) if quiet else 0
            status = status_of(step.id)
            if status == _PENDING:
                self.decide(step)
            elif status == _PAUSED or (status == _RUNNING and step.id in self.interrupted):
                self.start(step)
            elif status == _FAILED:
                self.retry(step)
        if self.pause is not None:
            self.decisions.append(self.pause)
        elif not self._restless:
            outputs = {
                step_id: self.results[step_id]["output"]
                for step_id in self.steps
                if status_of(step_id) == _COMPLETED
            }
            self.decisions.append(CompleteExecution(outputs))
        return Plan(tuple(self.decisions), self.wake_at, in_flight, withheld=self.withheld)

    def at_rest(self, step_id: str) -> bool:
        """True when the step will not change any more (its outgoing edges are resolved)."""
        status = self.results.status(step_id)
        if status == _FAILED:
            return self.steps.not_before(step_id) is None
        return status in _RESTING

    def settle(self, step: StepDefinition, status: str, *output: Any) -> None:
        """Record a decision's effect on ``step``; a step it brings to rest frees the next."""
        rested = self.at_rest(step.id)
        self.results.settle(step.id, status, *output)
        if rested or not self.at_rest(step.id):
            return
        self._restless -= 1
        for after in self.definition.downstream(step.id):
            index = self._order[after.id]
            if index not in self._queued:
                self._queued.add(index)
                heapq.heappush(self._queue, index)

    def decide(self, step: StepDefinition) -> None:
        """Skip or start a PENDING step, once its incoming edges are all resolved."""
        edges = step.depends_on
        for edge in edges:
            if not self.at_rest(edge.source):
                return
        recorded = len(self.decisions)
        # Every edge is evaluated, none short-circuited: each condition is recorded, and a
        # broken one fails the execution even when another edge is active.
        active = [self.edge_active(edge, step.id) for edge in edges]
        if edges and not any(active):
            self.skip(step, BRANCH_NOT_TAKEN)
        elif step.condition and not self.evaluate(step.condition, self.guard_names(step), step.id):
            self.skip(step, CONDITION_FALSE)
        elif not self.start(step):
            # No start left in this plan: record nothing, so a later plan decides it whole.
            del self.decisions[recorded:]

    def edge_active(self, edge: Dependency, target: str) -> bool:
        """Evaluate (and record) the edge's condition when its source completed or failed."""
        status = self.results.status(edge.source)
        finished = (
            status == _COMPLETED
            or (status == _FAILED and self.definition.step(edge.source).continue_on_error)
            # Skipped by an operator: what follows runs, as after a completion.
            or (status == _SKIPPED and self.steps.step(edge.source).reason == SKIPPED_BY_OPERATOR)
        )
        if not finished:
            return False
        if not edge.condition:
            return True
        names = self.source_names(self.results[edge.source])
        return self.evaluate(edge.condition, names, target, edge.source)

    def guard_names(self, step: StepDefinition) -> dict[str, Any]:
        """Names for a step's own condition: with one dependency, that dependency's too."""
        if len(step.depends_on) == 1:
            return self.source_names(self.results[step.depends_on[0].source])
        return {"input": self.steps.input, "steps": self.results}

    def source_names(self, source: dict[str, Any]) -> dict[str, Any]:
        """Names for a condition on an edge leaving the step whose result is ``source``."""
        return {
            "input": self.steps.input,
            "steps": self.results,
            "output": source["output"],
            "status": source["status"],
            "error": source["error"],
        }

    def evaluate(
        self, expression: str, names: dict[str, Any], target: str, source: str | None = None
    ) -> bool:
        """Evaluate a condition and record its value.

        Raises:
            ConditionError: It does not compile (the definition was never checked) or
                cannot be evaluated.
        """
        condition, problems = compile_condition(expression)
        if condition is None:
            reason = "invalid condition: " + "; ".join(problems)
            raise ConditionError(expression, reason, source, target)
        value, _ = evaluate_condition(condition, names, self.context, source=source, target=target)
        self.decisions.append(RecordCondition(source, target, expression, value))
        return value

    def skip(self, step: StepDefinition, reason: str) -> None:
        """Skip a PENDING step."""
        self.decisions.append(SkipStep(step.id, reason))
        self.settle(step, _SKIPPED)

    def start(self, step: StepDefinition) -> bool:
        """Start a step, or pause it for input; False when no start is left in this plan."""
        if step.kind == "trigger":
            output = plain_copy(self.steps.input)
            self.decisions.append(CompleteTrigger(step.id, output))
            self.settle(step, _COMPLETED, output)
            return True
        try:
            parameters = self.resolve(step.parameters)
        except MissingInputError as error:
            if not self.is_input(error.missing_var):
                raise UnavailableOutputError(step.id, error.missing_var) from error
            self.wait_for_input(step, error.missing_var)
            return True
        if self.starts_left is not None:
            if self.starts_left <= 0:
                self.withheld = True
                return False
            self.starts_left -= 1
        self.decisions.append(StartStep(step.id, parameters))
        self.settle(step, _RUNNING)
        return True

    def is_input(self, reference: str) -> bool:
        """True when a reference reads the execution input, which a resume can provide.

        That is ``input`` itself, or a trigger's output (a trigger's output is the
        input); any other step's result cannot be provided later.
        """
        root = reference.split(".", 1)[0].split("[", 1)[0]
        if root == "input":
            return True
        try:
            return self.definition.step(root).kind == "trigger"
        except KeyError:  # pragma: no cover - references are checked at load time
            return False

    def resolve(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """Resolve a step's parameters.

        Raises:
            MissingInputError: A reference names a value that is not there.
        """
        resolved: dict[str, Any] = resolve_references(parameters, self.context)
        return resolved

    def wait_for_input(self, step: StepDefinition, missing_var: str) -> None:
        """Pause a PENDING step for ``missing_var``, and the execution after this plan."""
        # A PAUSED step already is, and a FAILED one waiting for its retry cannot be: it
        # stays FAILED and is retried after the resume.
        if self.results.status(step.id) in _PAUSABLE:
            self.decisions.append(PauseStep(step.id, missing_var))
            self.settle(step, _PAUSED)
        if self.pause is None:
            self.pause = PauseExecution(step.id, missing_var)

    def retry(self, step: StepDefinition) -> None:
        """Start a FAILED step whose retry is due; note when the next retry is."""
        not_before = self.steps.not_before(step.id)
        if not_before is None:
            return
        if not_before <= self.now:
            self.start(step)
        elif self.wake_at is None or not_before < self.wake_at:
            self.wake_at = not_before
