"""What a recorded execution did, read once for what-if replay.

The replay needs, per step, the final recorded outcome of its action (with the action
and resolved parameters it ran with) and of its compensation, the branch decisions,
and the input the execution ended with. Everything is read from the ledger; nothing is
written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowledger.domain.definition import WorkflowDefinition, load_definition
from flowledger.domain.state import ExecutionState, HistoryEntry, StepState
from flowledger.domain.status import StepStatus
from flowledger.engine.decisions import CompensateStep
from flowledger.engine.planning import compensation_decision

if TYPE_CHECKING:  # the ledger may import what-if replay: no import cycle at run time
    from flowledger.engine.ledger import Ledger

EdgeKey = tuple[str | None, str]
"""A condition's edge: (source step id or None for a step's own condition, target)."""

_ACTION_RAN = frozenset(
    {
        StepStatus.COMPLETED,
        StepStatus.COMPENSATING,
        StepStatus.ROLLED_BACK,
        StepStatus.COMPENSATION_FAILED,
    }
)


@dataclass(frozen=True)
class RecordedCall:
    """The final recorded outcome of one action call.

    Attributes:
        action: The action's name.
        parameters: The resolved parameters it was called with.
        output: What it returned, when it succeeded.
        error: Its recorded error data (``type``, ``message``, ...) when it failed.
    """

    action: str
    parameters: Mapping[str, Any]
    output: Any
    error: dict[str, Any] | None


@dataclass(frozen=True)
class RecordedExecution:
    """A recorded execution as what-if replay reads it.

    Attributes:
        execution_id: The execution's id.
        definition: The definition it ran (from its first event).
        state: Its state at the last event read.
        calls: Step id to the final outcome of the step's action.
        compensations: Step id to the outcome of the step's compensation.
        started: Ids of the steps whose action was started (triggers included).
        conditions: The latest recorded value of each evaluated condition.
        provided: Input keys provided after the start (``InputProvided``), in order.
    """

    execution_id: str
    definition: WorkflowDefinition
    state: ExecutionState
    calls: dict[str, RecordedCall]
    compensations: dict[str, RecordedCall]
    started: frozenset[str]
    conditions: dict[EdgeKey, bool]
    provided: tuple[str, ...]

    @property
    def input(self) -> dict[str, Any]:
        """The execution's final input: the start input with later inputs merged in."""
        return self.state.input


def read_recorded(ledger: Ledger, execution_id: str) -> RecordedExecution:
    """Read what ``execution_id`` recorded, without changing the store.

    Raises:
        ExecutionNotFoundError: No execution has this id.
        CorruptRecordError: A stored record cannot be read back.
    """
    history = ledger.history(execution_id)
    # The state at the last event read, so history and state agree even if the
    # execution is still running elsewhere.
    state = ledger.get(execution_id, version=history[-1].version)
    definition = load_definition(history[0].data["definition"])
    parameters: dict[str, Mapping[str, Any]] = {}
    provided: list[str] = []
    compensated: list[str] = []
    for entry in history:
        _note(entry, parameters, provided, compensated)
    calls = {
        step_id: call
        for step_id, given in parameters.items()
        if (call := _step_call(definition, state.steps[step_id], given)) is not None
    }
    compensations = {
        step_id: call
        for step_id in compensated
        if (call := _compensation_call(definition, state, step_id)) is not None
    }
    return RecordedExecution(
        execution_id=execution_id,
        definition=definition,
        state=state,
        calls=calls,
        compensations=compensations,
        started=frozenset(parameters),
        conditions=conditions_of(history),
        provided=tuple(dict.fromkeys(provided)),
    )


def conditions_of(history: Sequence[HistoryEntry]) -> dict[EdgeKey, bool]:
    """Return the latest value of every condition a history records, by edge."""
    return {
        (entry.data["source"], entry.data["target"]): entry.data["value"]
        for entry in history
        if entry.type == "ConditionEvaluated"
    }


def _note(
    entry: HistoryEntry,
    parameters: dict[str, Mapping[str, Any]],
    provided: list[str],
    compensated: list[str],
) -> None:
    data = entry.data
    match entry.type:
        case "StepStarted":
            parameters[data["step_id"]] = data["parameters"]  # the latest attempt's
        case "InputProvided":
            provided.extend(data["inputs"])
        case "CompensationStarted":
            compensated.append(data["step_id"])


def _step_call(
    definition: WorkflowDefinition, step: StepState, parameters: Mapping[str, Any]
) -> RecordedCall | None:
    action = definition.step(step.step_id).action
    if action is None:  # a trigger runs no action
        return None
    if step.status in _ACTION_RAN:
        return RecordedCall(action, parameters, step.output, None)
    if step.status is StepStatus.FAILED:
        # The latest attempt's failure: after retries, the step's final outcome.
        return RecordedCall(action, parameters, None, step.error)
    return None  # started, but no outcome was recorded (interrupted, still running)


def _compensation_call(
    definition: WorkflowDefinition, state: ExecutionState, step_id: str
) -> RecordedCall | None:
    step = state.steps[step_id]
    decision = compensation_decision(step_id, state, definition)
    if not isinstance(decision, CompensateStep):
        return None  # its parameters could not be resolved: nothing ran
    if step.status is StepStatus.ROLLED_BACK:
        return RecordedCall(decision.action, decision.parameters, step.compensation_output, None)
    if step.status is StepStatus.COMPENSATION_FAILED:
        return RecordedCall(decision.action, decision.parameters, None, step.error)
    return None
