"""How an attempt's outcome is recorded: checks before an action runs, outcomes after.

Pure aggregate commands (no asyncio, no I/O): the runner calls these with the time and
the engine's retry settings, then saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flowledger.domain.definition import StepDefinition, WorkflowDefinition
from flowledger.domain.definition.model import RetryPolicy
from flowledger.domain.execution import Execution
from flowledger.domain.operator_events import retry_base
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.actions import ActionRegistry
from flowledger.engine.invocation import Outcome, error_data
from flowledger.engine.retries import effective_policy, next_retry_time, should_retry
from flowledger.engine.schemas import check
from flowledger.errors import FlowledgerError

_RETRYING = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.PAUSED})


def refusal(
    actions: ActionRegistry,
    action: str,
    parameters: Mapping[str, Any],
    *,
    input_schema: Mapping[str, Any] | None = None,
    step_id: str | None = None,
) -> dict[str, Any] | None:
    """Return why an action cannot run (unknown action, invalid input), as error data.

    Such a failure is recorded at once, never retried: running the action again would
    meet it again.
    """
    try:
        actions.get(action)
        if input_schema is not None:
            check(input_schema, parameters, schema_type="input", step_id=step_id)
    except FlowledgerError as error:
        return error_data(error)
    return None


def record_compensation(execution: Execution, step_id: str, outcome: Outcome, at: datetime) -> None:
    """Record what a step's compensating action did."""
    if outcome.ok:
        execution.roll_back_step(step_id, outcome.output, at)
    else:
        execution.fail_compensation(step_id, outcome.error or {}, at)


def record_outcome(
    execution: Execution,
    step: StepDefinition,
    outcome: Outcome,
    at: datetime,
    *,
    default_policy: RetryPolicy,
    random: Callable[[], float],
) -> None:
    """Record an attempt's outcome: its completion, or its failure and any retry.

    An output that does not match the step's output schema is a non-retryable failure.
    """
    error = outcome.error
    if outcome.ok:
        error = _output_refusal(step, outcome.output)
        if error is None:
            execution.complete_step(step.id, outcome.output, outcome.duration_ms, at)
            return
    assert error is not None  # a failed outcome carries its error
    if outcome.timed_out:
        execution.time_out_step(step.id, step.timeout or 0.0, at)
    else:
        execution.fail_step(step.id, error, error["retryable"], outcome.duration_ms, at)
    _schedule_retry(execution, step, error, at, default_policy=default_policy, random=random)


def _output_refusal(step: StepDefinition, output: Any) -> dict[str, Any] | None:
    if step.output_schema is None:
        return None
    try:
        check(step.output_schema, output, schema_type="output", step_id=step.id)
    except FlowledgerError as error:
        return error_data(error)
    return None


def _schedule_retry(
    execution: Execution,
    step: StepDefinition,
    error: dict[str, Any],
    at: datetime,
    *,
    default_policy: RetryPolicy,
    random: Callable[[], float],
) -> None:
    # A step that fails while the execution is paused keeps its retries: the retry is
    # scheduled now and runs after the resume.
    if execution.status not in _RETRYING or execution.cancel_requested:
        return
    policy = effective_policy(step, default_policy)
    # After an operator's retry the step has its whole policy again.
    attempt = execution.step_state(step.id).attempts - retry_base(execution, step.id)
    if should_retry(policy, attempt, error):
        not_before = next_retry_time(policy, attempt + 1, at, random)
        execution.schedule_retry(step.id, not_before, at)


def schedule_missing_retries(
    execution: Execution,
    definition: WorkflowDefinition,
    at: datetime,
    *,
    default_policy: RetryPolicy,
    random: Callable[[], float],
) -> None:
    """On recovery, decide again the retries of failures recorded without their decision.

    :func:`record_outcome` records a failure and its retry in one save, but a store may
    keep a prefix of a save (any prefix of a history is one): the history then ends
    with a failure and no retry, which would read as final. The decision is taken again
    from the recorded error, as it was taken then. Recorded errors keep only the bare
    type, so a ``non_retryable`` entry given as a qualified name is matched here by its
    class name.
    """
    for step_id, step in execution.state().steps.items():
        if step.status is not StepStatus.FAILED or step.not_before is not None or not step.error:
            continue
        step_definition = definition.step(step_id)
        policy = effective_policy(step_definition, default_policy)
        bare_names = {name.rpartition(".")[2] for name in policy.non_retryable}
        if step.error["type"] in bare_names:
            continue
        _schedule_retry(
            execution, step_definition, step.error, at, default_policy=policy, random=random
        )
