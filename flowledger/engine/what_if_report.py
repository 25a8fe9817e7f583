"""The report of a what-if replay: the recorded execution and the replay, step by step.

Steps are reported in the order of the new definition (topological), with steps that
only the recorded definition has placed after the step that preceded them there. The
first divergence is the first step, in that order, where the replay departs from the
record during the run (a different call, branch, status or a step run in one and not
the other); only when the run matches is it the first step rolled back differently.
Topological order is used rather than event order because it does not depend
on how concurrent steps happened to interleave in either run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from flowledger.domain.canonical import canonical_json
from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.state import ExecutionState, HistoryEntry, StepState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.audit import entry_json
from flowledger.engine.what_if_actions import ReplayedCall
from flowledger.engine.what_if_record import EdgeKey, RecordedExecution, conditions_of

NOT_RUN = "not run"
TRIGGER = "trigger"
REMOVED = "removed from the definition"


@dataclass(frozen=True)
class StepComparison:
    """One step, as recorded and as replayed.

    Attributes:
        step_id: The step's id.
        recorded_status: Its recorded status; None when the recorded definition has no
            such step.
        what_if_status: Its status in the replay; None when the new definition has none.
        recorded_output: Its recorded output (None unless it completed).
        what_if_output: Its output in the replay (None unless it completed).
        recorded_error: The recorded error data of its latest failure, or None.
        what_if_error: The error data of its failure in the replay, or None.
        produced_by: ``"served"`` (the recorded outcome), ``"stubbed"``, ``"not run"``,
            or ``"trigger"`` (a graph trigger node runs no action).
        reason: Why it was stubbed (``new step``, ``not run before``, ``action
            changed``, ``parameters changed: ...``) or not run (its status and reason
            in the replay, or ``removed from the definition``); None when served.
        compensation: ``"served"`` or ``"stubbed"`` when the replay compensated the
            step, else None.
        compensation_reason: Why the compensation was stubbed, or None.
        outputs_changed: The replay's output differs from the recorded one.
        divergence: How the replay departs from the record at this step, or None.
    """

    step_id: str
    recorded_status: str | None
    what_if_status: str | None
    recorded_output: Any
    what_if_output: Any
    recorded_error: dict[str, Any] | None
    what_if_error: dict[str, Any] | None
    produced_by: str
    reason: str | None
    compensation: str | None
    compensation_reason: str | None
    outputs_changed: bool
    divergence: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict (the attributes by name)."""
        return asdict(self)

    def line(self) -> str:
        """Return the comparison as one line of text."""
        how = self.produced_by + (f" ({self.reason})" if self.reason else "")
        text = (
            f"{self.step_id}: {self.recorded_status or '-'} → {self.what_if_status or '-'}, {how}"
        )
        if self.compensation:
            text += f", compensation {self.compensation}"
        if self.outputs_changed:
            text += ", output changed"
        return text


@dataclass(frozen=True)
class WhatIfReport:
    """What a recorded execution would have done under another definition.

    Attributes:
        execution_id: The recorded execution.
        workflow_id: The id of the workflow the new definition declares.
        recorded_status: How the recorded execution stands.
        what_if_status: How the replay ended (PAUSED when an input it needs is missing).
        paused_on: The missing input the replay paused on, or None.
        input: The input the replay ran with: the recorded input with every input
            provided later (``InputProvided``) merged in.
        inputs_provided_later: The keys of ``input`` that were provided after the start.
        recorded_definition_hash: Hash of the definition the execution ran.
        what_if_definition_hash: Hash of the new definition.
        steps: Each step's comparison, by id, in report order (see the module).
        first_divergence: The id of the first step where the replay departs from the
            record, or None when it matches the record exactly.
        history: The replay's own event history (from an in-memory store).
    """

    execution_id: str
    workflow_id: str
    recorded_status: ExecutionStatus
    what_if_status: ExecutionStatus
    paused_on: str | None
    input: dict[str, Any]
    inputs_provided_later: tuple[str, ...]
    recorded_definition_hash: str
    what_if_definition_hash: str
    steps: dict[str, StepComparison]
    first_divergence: str | None
    history: tuple[HistoryEntry, ...]

    @property
    def outputs_changed(self) -> tuple[str, ...]:
        """Ids of the steps whose output differs from the recorded one, in report order."""
        return tuple(step.step_id for step in self.steps.values() if step.outputs_changed)

    @property
    def matches(self) -> bool:
        """True when the replay follows the record exactly and ends the same way."""
        return self.first_divergence is None and self.what_if_status == self.recorded_status

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict (history entries as ``export`` writes them)."""
        return {
            "execution_id": self.execution_id,
            "workflow_id": self.workflow_id,
            "recorded_status": self.recorded_status.value,
            "what_if_status": self.what_if_status.value,
            "paused_on": self.paused_on,
            "input": self.input,
            "inputs_provided_later": list(self.inputs_provided_later),
            "recorded_definition_hash": self.recorded_definition_hash,
            "what_if_definition_hash": self.what_if_definition_hash,
            "first_divergence": self.first_divergence,
            "outputs_changed": list(self.outputs_changed),
            "steps": {step_id: step.to_dict() for step_id, step in self.steps.items()},
            "history": [entry_json(entry) for entry in self.history],
        }

    def lines(self) -> list[str]:
        """Return the report as lines of text for people."""
        status = (
            f"status: recorded {self.recorded_status.value}, what-if {self.what_if_status.value}"
        )
        if self.paused_on is not None:
            status += f" (paused on {self.paused_on})"
        lines = [f"what-if replay of execution {self.execution_id}", _input_line(self), status]
        if self.first_divergence is None:
            matching = ", the replay matches the record" if self.matches else ""
            lines.append(f"first divergence: none{matching}")
        else:
            divergence = self.steps[self.first_divergence].divergence
            lines.append(f"first divergence: {self.first_divergence} ({divergence})")
        lines.append("steps:")
        lines.extend(f"  {step.line()}" for step in self.steps.values())
        return lines


def _input_line(report: WhatIfReport) -> str:
    if not report.inputs_provided_later:
        return "input: the execution's recorded input"
    keys = ", ".join(report.inputs_provided_later)
    return f"input: the recorded input with the inputs provided later merged in ({keys})"


def build_report(
    record: RecordedExecution,
    definition: WorkflowDefinition,
    replay: ExecutionState,
    history: Sequence[HistoryEntry],
    calls: Iterable[ReplayedCall],
) -> WhatIfReport:
    """Compare the recorded execution with its replay on ``definition``.

    Args:
        record: The recorded execution.
        definition: The definition the replay ran.
        replay: The replay's final state.
        history: The replay's history.
        calls: The replay's action calls, in order.
    """
    comparer = _Comparer(record, definition, replay, conditions_of(history), calls)
    order = report_order(definition.step_ids, record.definition.step_ids)
    steps = {step_id: comparer.compare(step_id) for step_id in order}
    diverged = [step_id for step_id, step in steps.items() if step.divergence]
    # A rollback follows the run: a step rolled back differently is a consequence of a
    # departure during the run, if there is one.
    during_run = (step_id for step_id in diverged if step_id not in comparer.rollback_only)
    first = next(during_run, diverged[0] if diverged else None)
    return WhatIfReport(
        execution_id=record.execution_id,
        workflow_id=definition.id,
        recorded_status=record.state.status,
        what_if_status=replay.status,
        paused_on=replay.paused_on,
        input=record.input,
        inputs_provided_later=record.provided,
        recorded_definition_hash=record.definition.hash,
        what_if_definition_hash=definition.hash,
        steps=steps,
        first_divergence=first,
        history=tuple(history),
    )


def report_order(new: Sequence[str], recorded: Sequence[str]) -> list[str]:
    """Return the new step ids, with recorded-only ones after their recorded predecessor.

    Example:
        >>> report_order(["a", "c"], ["a", "b", "c"])
        ['a', 'b', 'c']
    """
    order = list(new)
    known = set(order)
    previous: str | None = None
    for step_id in recorded:
        if step_id not in known:
            order.insert(0 if previous is None else order.index(previous) + 1, step_id)
        previous = step_id
    return order


class _Comparer:
    def __init__(
        self,
        record: RecordedExecution,
        definition: WorkflowDefinition,
        replay: ExecutionState,
        conditions: Mapping[EdgeKey, bool],
        calls: Iterable[ReplayedCall],
    ) -> None:
        self._record = record
        self._definition = definition
        self._replay = replay
        self._conditions = conditions
        self._calls: dict[str, ReplayedCall] = {}
        self._compensations: dict[str, ReplayedCall] = {}
        self.rollback_only: set[str] = set()
        """Steps whose divergence shows only in the rollback."""
        for call in calls:  # the latest call of each step counts
            (self._compensations if call.compensation else self._calls)[call.step_id] = call

    def compare(self, step_id: str) -> StepComparison:
        recorded = self._record.state.steps.get(step_id)
        replayed = self._replay.steps.get(step_id)
        produced_by, reason = self._production(step_id, replayed)
        compensation = self._compensations.get(step_id)
        recorded_output = None if recorded is None else recorded.output
        what_if_output = None if replayed is None else replayed.output
        comparison = StepComparison(
            step_id=step_id,
            recorded_status=None if recorded is None else recorded.status.value,
            what_if_status=None if replayed is None else replayed.status.value,
            recorded_output=recorded_output,
            what_if_output=what_if_output,
            recorded_error=None if recorded is None else recorded.error,
            what_if_error=None if replayed is None else replayed.error,
            produced_by=produced_by,
            reason=reason,
            compensation=None if compensation is None else compensation.produced_by,
            compensation_reason=None if compensation is None else compensation.reason,
            outputs_changed=canonical_json(recorded_output) != canonical_json(what_if_output),
            divergence=None,
        )
        divergence = self._branch(step_id) or self._run_departure(comparison)
        if divergence is None:
            divergence = self._rollback_departure(comparison)
            if divergence is not None:
                self.rollback_only.add(step_id)
        return replace(comparison, divergence=divergence)

    def _production(self, step_id: str, replayed: StepState | None) -> tuple[str, str | None]:
        if replayed is None:
            return NOT_RUN, REMOVED
        call = self._calls.get(step_id)
        if call is not None:
            return call.produced_by, call.reason
        if self._definition.step(step_id).kind == "trigger":
            return TRIGGER, None
        rest = replayed.status.value.lower()
        return NOT_RUN, rest if replayed.reason is None else f"{rest}: {replayed.reason}"

    def _branch(self, step_id: str) -> str | None:
        recorded = self._record.conditions
        for (source, target), value in self._conditions.items():
            if target == step_id and recorded.get((source, target), value) != value:
                edge = target if source is None else f"{source} → {target}"
                before, now = str(not value).lower(), str(value).lower()
                return f"branch taken differently: condition on {edge} was {before}, now {now}"
        return None

    def _run_departure(self, step: StepComparison) -> str | None:
        if step.produced_by == "stubbed":
            return f"stubbed: {step.reason}"
        if step.step_id in self._record.started and step.produced_by == NOT_RUN:
            return f"ran before, not run now ({step.reason})"
        before, now = _run_status(step.recorded_status), _run_status(step.what_if_status)
        if before and now and before != now:
            return f"status changed: {step.recorded_status} → {step.what_if_status}"
        return None

    def _rollback_departure(self, step: StepComparison) -> str | None:
        if step.compensation == "stubbed":
            return f"compensation stubbed: {step.compensation_reason}"
        if (
            step.recorded_status
            and step.what_if_status
            and step.recorded_status != step.what_if_status
        ):
            return f"status changed: {step.recorded_status} → {step.what_if_status}"
        return None


def _run_status(status: str | None) -> str | None:
    """A step's status as its own run left it, before any rollback."""
    return "COMPLETED" if status in _ROLLBACK_STATUSES else status


_ROLLBACK_STATUSES = frozenset(
    {StepStatus.COMPENSATING, StepStatus.ROLLED_BACK, StepStatus.COMPENSATION_FAILED}
)
