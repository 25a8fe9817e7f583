"""One planning pass over a RUNNING execution that is neither failing nor cancelled.

:func:`flowledger.engine.planning.plan` hands this pass the execution's state when
there is new work to decide: steps whose incoming edges are all resolved, steps to start
again (PAUSED, retry due, interrupted), and completion. The rules are in the module
docstring of :mod:`flowledger.engine.planning`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from flowledger.domain.conditions import compile_condition, evaluate_condition
from flowledger.domain.definition import Dependency, StepDefinition, WorkflowDefinition
from flowledger.domain.references import plain_copy, resolve_references
from flowledger.domain.state import ExecutionState
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
from flowledger.errors import ConditionError, MissingInputError, UnavailableOutputError

BRANCH_NOT_TAKEN = "branch_not_taken"
"""Why a step none of whose incoming edges is active is skipped."""
CONDITION_FALSE = "condition_false"
"""Why a step whose own condition is false is skipped."""

# Plain strings: step results hold them, and conditions compare them with literals.
_PENDING = StepStatus.PENDING.value
_RUNNING = StepStatus.RUNNING.value
_COMPLETED = StepStatus.COMPLETED.value
_FAILED = StepStatus.FAILED.value
_PAUSED = StepStatus.PAUSED.value
_SKIPPED = StepStatus.SKIPPED.value
_RESTING = frozenset({_COMPLETED, _SKIPPED, StepStatus.CANCELLED.value})
_PAUSABLE = frozenset({_PENDING, _RUNNING})  # RUNNING: an interrupted step
_VALUES = {status: status.value for status in StepStatus}


class StepResults(Mapping[str, dict[str, Any]]):
    """Step id to ``{"output", "status", "error"}``: what conditions call ``steps``.

    Each entry is built when it is first read, so a plan over a long workflow pays
    only for the steps its conditions and references read. Decisions made during a
    pass update ``statuses`` (and ``outputs``) through :meth:`settle`.

    Attributes:
        statuses: Every step's status, as a plain string.
        outputs: Outputs decided during the pass (a trigger's), by step id.
    """

    def __init__(self, state: ExecutionState) -> None:
        """Read the results of ``state``'s steps."""
        self._steps = state.steps
        self.statuses = {step_id: _VALUES[step.status] for step_id, step in state.steps.items()}
        self.outputs: dict[str, Any] = {}
        self._built: dict[str, dict[str, Any]] = {}

    def __getitem__(self, step_id: str) -> dict[str, Any]:
        entry = self._built.get(step_id)
        if entry is None:
            step = self._steps[step_id]
            output = self.outputs.get(step_id, step.output)
            entry = {"output": output, "status": self.statuses[step_id], "error": step.error}
            self._built[step_id] = entry
        return entry

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._steps

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def settle(self, step_id: str, status: str, *output: Any) -> None:
        """Record a decision's effect on a step: its status, and its output if given."""
        self.statuses[step_id] = status
        if output:
            self.outputs[step_id] = output[0]
        self._built.pop(step_id, None)


class ReferenceContext(Mapping[str, Any]):
    """The roots ``${...}`` references resolve in: ``input``, and each step's result."""

    def __init__(self, state: ExecutionState, results: StepResults) -> None:
        """Resolve ``input`` in ``state`` and step ids in ``results``."""
        self._input = state.input
        self._results = results

    def __getitem__(self, root: str) -> Any:
        return self._input if root == "input" else self._results[root]

    def __contains__(self, root: object) -> bool:
        return root == "input" or root in self._results

    def __iter__(self) -> Iterator[str]:
        yield "input"
        yield from self._results

    def __len__(self) -> int:
        return len(self._results) + 1


class Scheduler:
    """Decides the steps of one execution in topological order, in one pass.

    Decisions take effect as they are made, so later steps see earlier decisions of
    the same plan: a skipped step resolves its downstream edges, a trigger's output is
    there for the conditions after it.
    """

    def __init__(
        self,
        state: ExecutionState,
        definition: WorkflowDefinition,
        now: datetime,
        interrupted: frozenset[str] = frozenset(),
        max_starts: int | None = None,
    ) -> None:
        """Prepare a pass; see :func:`flowledger.engine.planning.plan` for the arguments."""
        self.state = state
        self.definition = definition
        self.now = now
        self.interrupted = interrupted
        self.starts_left = max_starts
        self.results = StepResults(state)
        self.statuses = self.results.statuses
        self.context = ReferenceContext(state, self.results)
        self.decisions: list[Decision] = []
        self.decided = 0
        """How many of ``decisions`` only record conditions and skips, from the first
        step on: the ones to keep when a later step's condition or reference fails the
        pass (the branches that led to the failure; nothing new starts)."""
        self.pause: PauseExecution | None = None
        self.wake_at: datetime | None = None

    def plan(self, in_flight: tuple[str, ...]) -> Plan:
        """Visit every step; then pause or complete the execution if that is due.

        Raises:
            ConditionError: A condition could not be evaluated.
            UnavailableOutputError: A step's parameters reference a result that does
                not exist.
        """
        statuses = self.statuses
        unfinished = False
        quiet = True
        for step in self.definition.steps:
            if quiet:
                made = self.decisions[self.decided :]
                quiet = all(isinstance(d, RecordCondition | SkipStep) for d in made)
                self.decided += len(made) if quiet else 0
            status = statuses[step.id]
            if status == _PENDING:
                self.decide(step)
            elif status == _PAUSED or (status == _RUNNING and step.id in self.interrupted):
                self.start(step)
            elif status == _FAILED:
                self.retry(step)
            unfinished = unfinished or not self.at_rest(step.id)
        if self.pause is not None:
            self.decisions.append(self.pause)
        elif not unfinished:
            outputs = {
                step_id: self.results[step_id]["output"]
                for step_id, status in statuses.items()
                if status == _COMPLETED
            }
            self.decisions.append(CompleteExecution(outputs))
        return Plan(tuple(self.decisions), self.wake_at, in_flight)

    def at_rest(self, step_id: str) -> bool:
        """True when the step will not change any more (its outgoing edges are resolved)."""
        status = self.statuses[step_id]
        if status == _FAILED:
            return self.state.steps[step_id].not_before is None
        return status in _RESTING

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
        status = self.statuses[edge.source]
        finished = status == _COMPLETED or (
            status == _FAILED and self.definition.step(edge.source).continue_on_error
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
        return {"input": self.state.input, "steps": self.results}

    def source_names(self, source: dict[str, Any]) -> dict[str, Any]:
        """Names for a condition on an edge leaving the step whose result is ``source``."""
        return {
            "input": self.state.input,
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
        self.results.settle(step.id, _SKIPPED)

    def start(self, step: StepDefinition) -> bool:
        """Start a step, or pause it for input; False when no start is left in this plan."""
        if step.kind == "trigger":
            output = plain_copy(self.state.input)
            self.decisions.append(CompleteTrigger(step.id, output))
            self.results.settle(step.id, _COMPLETED, output)
            return True
        try:
            parameters = self.resolve(step.parameters)
        except MissingInputError as error:
            if not _is_input(error.missing_var):
                raise UnavailableOutputError(step.id, error.missing_var) from error
            self.wait_for_input(step, error.missing_var)
            return True
        if self.starts_left is not None:
            if self.starts_left <= 0:
                return False
            self.starts_left -= 1
        self.decisions.append(StartStep(step.id, parameters))
        self.results.settle(step.id, _RUNNING)
        return True

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
        if self.statuses[step.id] in _PAUSABLE:
            self.decisions.append(PauseStep(step.id, missing_var))
            self.results.settle(step.id, _PAUSED)
        if self.pause is None:
            self.pause = PauseExecution(step.id, missing_var)

    def retry(self, step: StepDefinition) -> None:
        """Start a FAILED step whose retry is due; note when the next retry is."""
        not_before = self.state.steps[step.id].not_before
        if not_before is None:
            return
        if not_before <= self.now:
            self.start(step)
        elif self.wake_at is None or not_before < self.wake_at:
            self.wake_at = not_before


def _is_input(reference: str) -> bool:
    """True when a reference reads the execution input (which a resume can provide)."""
    return reference == "input" or reference.startswith(("input.", "input["))
