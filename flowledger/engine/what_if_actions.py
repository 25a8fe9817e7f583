"""Stand-ins for every action of a what-if replay: recorded outcomes served, the rest stubbed.

No real action runs during a replay. Each call is answered from the record when the
recorded execution called the same action for the same step with the same resolved
parameters (compared as canonical JSON); otherwise a stub answers. Every failure is
raised as a :class:`~flowledger.errors.NonRetryableError`, so a replay never waits for
a retry.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flowledger.domain.canonical import canonical_json
from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.state import HistoryEntry
from flowledger.engine.actions import Action, ActionRegistry
from flowledger.engine.invocation import current_step_id
from flowledger.engine.what_if_record import RecordedCall, RecordedExecution
from flowledger.errors import NonRetryableError

Production = Literal["served", "stubbed"]
"""How a replayed call was answered."""

NEW_STEP = "new step"
NOT_RUN_BEFORE = "not run before"
ACTION_CHANGED = "action changed"
PARAMETERS_CHANGED = "parameters changed"

_SHOWN_CHANGES = 3
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class ReplayedCall:
    """One action call of the replay and how it was answered.

    Attributes:
        step_id: The step the call belongs to.
        action: The action's name.
        produced_by: ``"served"`` (recorded outcome) or ``"stubbed"``.
        reason: Why it was stubbed (None when served).
        compensation: The call was the step's compensation.
    """

    step_id: str
    action: str
    produced_by: Production
    reason: str | None
    compensation: bool


class ReplayActions:
    """Answers every action call of one replay, and logs how.

    Args:
        record: The recorded execution whose outcomes are served.
        definition: The definition being replayed (it names the actions to stand in for).
        stubs: Step id or action name to a stub: a value returned as the output, or a
            callable called with the parameters as keyword arguments. A step id wins
            over an action name; without a stub the output is ``{}``.
    """

    def __init__(
        self,
        record: RecordedExecution,
        definition: WorkflowDefinition,
        stubs: Mapping[str, Any] | None,
    ) -> None:
        self._record = record
        self._definition = definition
        self._stubs = dict(stubs or {})
        self._compensating: set[str] = set()
        self.calls: list[ReplayedCall] = []
        """Every call answered so far, in order."""

    def registry(self) -> ActionRegistry:
        """Return a registry holding a stand-in under every action name the definition uses."""
        names = {step.action for step in self._definition.steps if step.action is not None}
        names.update(step.compensate.action for step in self._definition.steps if step.compensate)
        return ActionRegistry({name: self._stand_in(name) for name in sorted(names)})

    def listen(self, entry: HistoryEntry) -> None:
        """Follow the replay's history (an engine listener).

        The engine saves ``CompensationStarted`` before it calls the compensation, so a
        call for a step seen here is that step's compensation.
        """
        if entry.type == "CompensationStarted" and entry.step_id is not None:
            self._compensating.add(entry.step_id)

    def _stand_in(self, action: str) -> Action:
        async def stand_in(**parameters: Any) -> Any:
            return await self._answer(action, parameters)

        return stand_in

    async def _answer(self, action: str, parameters: dict[str, Any]) -> Any:
        step_id = current_step_id()
        if step_id is None:  # pragma: no cover - the engine always calls through invoke
            msg = f"action {action!r} was called outside a step"
            raise RuntimeError(msg)
        compensation = step_id in self._compensating
        record = self._record.compensations if compensation else self._record.calls
        recorded = record.get(step_id)
        reason = self._stub_reason(step_id, recorded, action, parameters)
        produced_by: Production = "stubbed" if reason else "served"
        self.calls.append(ReplayedCall(step_id, action, produced_by, reason, compensation))
        if recorded is not None and reason is None:
            return _serve(recorded)
        return await self._stub(step_id, action, parameters)

    def _stub_reason(
        self,
        step_id: str,
        recorded: RecordedCall | None,
        action: str,
        parameters: Mapping[str, Any],
    ) -> str | None:
        if step_id not in self._record.definition.step_ids:
            return NEW_STEP
        if recorded is None:
            return NOT_RUN_BEFORE
        if recorded.action != action:
            return ACTION_CHANGED
        if canonical_json(recorded.parameters) != canonical_json(parameters):
            return f"{PARAMETERS_CHANGED}: {describe_change(recorded.parameters, parameters)}"
        return None

    async def _stub(self, step_id: str, action: str, parameters: dict[str, Any]) -> Any:
        stub = self._stubs.get(step_id, self._stubs.get(action, _NO_STUB))
        if stub is _NO_STUB:
            return {}
        if not callable(stub):
            return stub
        try:
            result = stub(**parameters)
            return await result if inspect.isawaitable(result) else result
        except NonRetryableError:
            raise
        except Exception as error:  # a stub's failure fails its step at once: no retry waits
            raise NonRetryableError(str(error), error_type=type(error).__name__) from error


_NO_STUB = object()


def _serve(recorded: RecordedCall) -> Any:
    if recorded.error is None:
        return recorded.output
    error = recorded.error
    raise NonRetryableError(str(error.get("message", "")), error_type=str(error["type"]))


def describe_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Describe how two parameter mappings differ, briefly.

    Example:
        >>> describe_change({"amount": 5, "note": "x"}, {"amount": 7, "currency": "EUR"})
        'amount: 5 → 7, currency added, note removed'
    """
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(f"{key} removed")
        elif key not in before:
            changes.append(f"{key} added")
        elif canonical_json(before[key]) != canonical_json(after[key]):
            changes.append(f"{key}: {_short(before[key])} → {_short(after[key])}")
    shown = ", ".join(changes[:_SHOWN_CHANGES])
    hidden = len(changes) - _SHOWN_CHANGES
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _short(value: Any) -> str:
    text = canonical_json(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 1]}…"
