"""Operators' interventions on an execution: retry from a failure, and skip a step.

Both always name an actor and a reason, and are recorded as events
(:mod:`flowledger.domain.operator_events`), so the audit timeline shows who changed the
course of an execution and why. Like every command they check first and record
nothing when refused.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from flowledger.domain.canonical import encode_payload
from flowledger.domain.execution_state import NON_TERMINAL, ExecutionRecord, aware
from flowledger.domain.lifecycles import EXECUTION_LIFECYCLE
from flowledger.domain.operator_events import ExecutionRetried, StepSkippedByOperator
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.domain.step_records import step_key
from flowledger.errors import InvalidTransitionError, OperatorActionError

_FAILED_EXECUTION = frozenset({ExecutionStatus.FAILED.value})
_SKIPPABLE_IN = NON_TERMINAL | _FAILED_EXECUTION
_FAILED_STEP = StepStatus.FAILED.value


def accountable(action: str, actor: str | None, reason: str | None) -> tuple[str, str]:
    """Return ``actor`` and ``reason`` stripped, refusing a missing or blank one.

    Raises:
        OperatorActionError: One of them is missing or blank.
    """
    missing = [
        name for name, value in (("actor", actor), ("reason", reason)) if not (value or "").strip()
    ]
    if missing:
        named = " and ".join(missing)
        raise OperatorActionError(action, f"an operator action must name its {named}")
    assert actor is not None and reason is not None
    return actor.strip(), reason.strip()


class Interventions(ExecutionRecord):
    """The operator commands of the ``Execution`` aggregate beyond cancel and pause."""

    def retry_from_failure(self, actor: str, reason: str, at: datetime) -> None:
        """Retry a FAILED execution from where it failed.

        The steps that failed it get their next attempt at once, with their whole retry
        policy again; the steps the failure cancelled before they ran run as usual.

        Raises:
            InvalidTransitionError: The execution is not FAILED (a rolled-back one was
                undone; start a new execution instead).
            OperatorActionError: ``actor`` or ``reason`` is missing.
        """
        actor, reason = accountable("retry", actor, reason)
        aware(at)
        if not EXECUTION_LIFECYCLE.allows(self._status, "reopen"):
            raise InvalidTransitionError("execution", self._status, "retry", self._execution_id)
        self._refuse_if_purged("retry")
        tolerant = _tolerant_ids(self._definition)
        failed = [
            step_id
            for step_id in self.step_ids()
            if self._steps[step_key(step_id)]["status"] == _FAILED_STEP
            and self._steps[step_key(step_id)]["not_before"] is None
            and step_id not in tolerant
        ]
        self._append(ExecutionRetried, at, step_ids=failed, actor=actor, reason=reason)

    def skip_by_operator(
        self, step_id: str, actor: str, reason: str, at: datetime, output: Any = None
    ) -> None:
        """Skip a step that has not completed; the steps after it run.

        A PENDING, PAUSED or FAILED step may be skipped while the execution is running,
        paused or FAILED (skipping the step that failed it reopens it). ``output``
        (JSON data, None for none) stands in for the step's output: references to the
        step resolve to it.

        Raises:
            InvalidTransitionError: The step is not PENDING, PAUSED or FAILED, the
                execution has ended otherwise, or a cancel was requested.
            OperatorActionError: ``actor`` or ``reason`` is missing, or the step is
                ``non_skippable`` or a trigger.
        """
        actor, reason = accountable("skip", actor, reason)
        try:
            self._check_step(step_id, "operator_skip", at, _SKIPPABLE_IN, new_work=True)
        except InvalidTransitionError as refused:  # named as the operator knows it
            trigger = "skip" if refused.entity == "step" else "skip a step of"
            raise InvalidTransitionError(
                refused.entity, refused.state, trigger, refused.subject
            ) from None
        self._refuse_if_purged("skip")
        if step_id in _unskippable_ids(self._definition):
            raise OperatorActionError("skip", f"step {step_id!r} is non_skippable or a trigger")
        recorded = encode_payload(output)
        self._append(
            StepSkippedByOperator, at, step_id=step_id, actor=actor, reason=reason, output=recorded
        )

    def _refuse_if_purged(self, action: str) -> None:
        if self.__dict__.get("_purged"):
            problem = f"execution {self._execution_id} was purged: its payloads are gone"
            raise OperatorActionError(action, problem)


@lru_cache(maxsize=256)
def _unskippable_ids(definition_json: str) -> frozenset[str]:
    steps = json.loads(definition_json)["steps"]
    return frozenset(
        step["id"] for step in steps if step.get("non_skippable") or step["type"] == "trigger"
    )


@lru_cache(maxsize=256)
def _tolerant_ids(definition_json: str) -> frozenset[str]:
    steps = json.loads(definition_json)["steps"]
    return frozenset(step["id"] for step in steps if step["continue_on_error"])
