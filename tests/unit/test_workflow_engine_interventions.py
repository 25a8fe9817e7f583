"""Governed operator actions: retry from a failure, skip, and who/why on every action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowledger import ExecutionStatus, InvalidTransitionError, StepStatus, WorkflowEngine
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.errors import OperatorActionError
from tests.unit.conftest import WAIT, Gate, statuses, step, types_of, workflow


class Flaky:
    """An action that fails its first ``failures`` calls, then returns its call count."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            message = f"service down (call {self.calls})"
            raise ConnectionError(message)
        return {"call": self.calls}


def three_steps(**flaky_options: Any) -> dict[str, Any]:
    """``first`` (noop) -> ``flaky`` -> ``after`` (echoes flaky's output)."""
    return workflow(
        step("first", "count"),
        step("flaky", "flaky", **flaky_options),
        step("after", "echo", parameters={"got": "${flaky.output}"}),
    )


@pytest.fixture
def flaky(engine: WorkflowEngine) -> Callable[[int], Flaky]:
    counts: dict[str, int] = {"first": 0}

    def count() -> dict[str, int]:
        counts["first"] += 1
        return dict(counts)

    engine.action("count")(count)

    def register(failures: int) -> Flaky:
        action = Flaky(failures)
        engine.action("flaky")(action)
        return action

    return register


async def test_a_retry_runs_the_failed_step_again_with_its_whole_policy_and_not_the_rest(
    engine: WorkflowEngine, flaky: Callable[[int], Flaky]
) -> None:
    action = flaky(3)  # two attempts fail it; the retry's second attempt succeeds
    failed = await engine.run_workflow(three_steps(retry={"max_attempts": 2}), timeout=WAIT)
    assert failed.status is ExecutionStatus.FAILED
    assert statuses(failed)["after"] == "CANCELLED"

    await engine.retry_workflow(failed.execution_id, actor="ann", reason="service is back")
    state = await engine.wait_for(failed.execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    assert action.calls == 4
    assert state.steps["flaky"].attempts == 4
    assert state.outputs["first"] == {"first": 1}  # recorded completions are not repeated
    assert state.outputs["after"] == {"got": {"call": 4}}
    history = engine.ledger.history(failed.execution_id)
    (retried,) = [entry for entry in history if entry.type == "ExecutionRetried"]
    assert retried.data == {
        "step_ids": ["flaky"],
        "actor": "ann",
        "reason": "service is back",
    }
    assert engine.ledger.verify(failed.execution_id).ok
    intervention = [
        line for line in engine.ledger.timeline(failed.execution_id) if line.intervention
    ]
    assert [(line.type, line.actor) for line in intervention] == [("ExecutionRetried", "ann")]


async def test_a_retry_that_fails_again_ends_failed_again_and_can_be_retried_once_more(
    engine: WorkflowEngine, flaky: Callable[[int], Flaky]
) -> None:
    flaky(2)
    failed = await engine.run_workflow(three_steps(retry={"max_attempts": 1}), timeout=WAIT)
    again = await engine.retry_workflow(failed.execution_id, actor="ann", reason="try again")
    again = await engine.wait_for(again.execution_id, timeout=WAIT)
    assert again.status is ExecutionStatus.FAILED
    assert again.error is not None
    assert "call 2" in again.error["message"]

    await engine.retry_workflow(failed.execution_id, actor="bob", reason="fixed for real")
    done = await engine.wait_for(failed.execution_id, timeout=WAIT)
    assert done.status is ExecutionStatus.COMPLETED
    assert types_of(engine.ledger.history(failed.execution_id)).count("ExecutionRetried") == 2


@pytest.mark.parametrize(("actor", "reason"), [("", "why"), ("ann", "  "), (None, "why")])
async def test_a_retry_without_actor_or_reason_is_refused_and_records_nothing(
    engine: WorkflowEngine, flaky: Callable[[int], Flaky], actor: Any, reason: Any
) -> None:
    flaky(1)
    failed = await engine.run_workflow(three_steps(retry={"max_attempts": 1}), timeout=WAIT)

    with pytest.raises(OperatorActionError, match="must name its") as refused:
        await engine.retry_workflow(failed.execution_id, actor=actor, reason=reason)

    assert refused.value.action == "retry"
    assert (await engine.get_workflow_status(failed.execution_id)).version == failed.version


async def test_only_a_failed_execution_can_be_retried(engine: WorkflowEngine) -> None:
    rolled_back = await engine.run_workflow(
        workflow(
            step("booked", "noop", compensate={"action": "noop"}),
            step("broken", "fail", parameters={"message": "no", "retryable": False}),
        ),
        timeout=WAIT,
    )
    completed = await engine.run_workflow(workflow(step("a", "noop")), timeout=WAIT)
    assert rolled_back.status is ExecutionStatus.ROLLED_BACK

    for state in (rolled_back, completed):
        with pytest.raises(InvalidTransitionError, match="cannot retry execution"):
            await engine.retry_workflow(state.execution_id, actor="ann", reason="again")
        assert (await engine.get_workflow_status(state.execution_id)).version == state.version


async def test_skipping_the_failed_step_reopens_the_execution_and_its_output_stands_in(
    engine: WorkflowEngine, flaky: Callable[[int], Flaky]
) -> None:
    action = flaky(5)
    failed = await engine.run_workflow(three_steps(retry={"max_attempts": 1}), timeout=WAIT)

    await engine.skip_step(
        failed.execution_id, "flaky", actor="ann", reason="done by hand", output={"call": 0}
    )
    state = await engine.wait_for(failed.execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    assert action.calls == 1
    assert state.steps["flaky"].status is StepStatus.SKIPPED
    assert state.steps["flaky"].reason == "skipped_by_operator"
    assert "flaky" not in state.outputs  # it did not complete
    assert state.outputs["after"] == {"got": {"call": 0}}
    (line,) = [line for line in engine.ledger.timeline(state.execution_id) if line.intervention]
    assert line.text == (
        "step flaky skipped by ann: done by hand (output given: call); the steps after it run"
    )


async def test_a_step_paused_for_input_can_be_skipped_and_the_execution_resumed(
    engine: WorkflowEngine,
) -> None:
    definition = workflow(
        step("ask", "echo", parameters={"name": "${input.name}"}),
        step("greet", "echo", parameters={"asked": "${ask.output}"}),
    )
    paused = await engine.run_workflow(definition, timeout=WAIT)
    assert paused.status is ExecutionStatus.PAUSED

    skipped = await engine.skip_step(paused.execution_id, "ask", actor="ann", reason="no name")
    assert skipped.status is ExecutionStatus.PAUSED  # a skip does not resume
    await engine.resume_workflow(paused.execution_id, actor="ann", reason="go on")
    state = await engine.wait_for(paused.execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    assert state.outputs == {"greet": {"asked": None}}
    resumed = [e for e in engine.ledger.history(state.execution_id) if e.type == "ExecutionResumed"]
    assert [(e.data["actor"], e.data["reason"]) for e in resumed] == [("ann", "go on")]


async def test_a_pending_step_can_be_skipped_while_the_execution_runs(
    engine: WorkflowEngine,
) -> None:
    gate = Gate()
    engine.action("held")(gate)
    execution_id = await engine.start_workflow(
        workflow(step("held", "held"), step("later", "noop"), step("last", "noop"))
    )
    await gate.reached()

    await engine.skip_step(execution_id, "later", actor="ann", reason="not needed today")
    gate.open()
    state = await engine.wait_for(execution_id, timeout=WAIT)

    assert statuses(state) == {"held": "COMPLETED", "later": "SKIPPED", "last": "COMPLETED"}


async def test_a_non_skippable_step_a_trigger_and_a_completed_step_are_refused(
    engine: WorkflowEngine,
) -> None:
    definition = workflow(
        step("charge", "echo", parameters={"card": "${input.card}"}, non_skippable=True)
    )
    paused = await engine.run_workflow(definition, timeout=WAIT)
    with pytest.raises(OperatorActionError, match="'charge' is non_skippable") as refused:
        await engine.skip_step(paused.execution_id, "charge", actor="ann", reason="hurry")
    assert refused.value.action == "skip"

    done = await engine.run_workflow(workflow(step("a", "noop")), timeout=WAIT)
    with pytest.raises(InvalidTransitionError):
        await engine.skip_step(done.execution_id, "a", actor="ann", reason="late")
    for state in (paused, done):
        assert (await engine.get_workflow_status(state.execution_id)).version == state.version


async def test_a_governed_engine_refuses_actions_without_actor_and_reason(
    make_engine: Callable[..., WorkflowEngine],
) -> None:
    async with make_engine(governed=True) as engine:
        gate = Gate()
        engine.action("held")(gate)
        execution_id = await engine.start_workflow(workflow(step("held", "held")))
        await gate.reached()
        before = (await engine.get_workflow_status(execution_id)).version

        with pytest.raises(OperatorActionError, match="actor and reason"):
            await engine.pause_workflow(execution_id)
        with pytest.raises(OperatorActionError, match="reason"):
            await engine.cancel_workflow(execution_id, actor="ann")
        with pytest.raises(OperatorActionError, match="actor"):
            await engine.resume_workflow(execution_id, reason="why not")
        assert (await engine.get_workflow_status(execution_id)).version == before

        await engine.pause_workflow(execution_id, "audit hold", actor="ann")
        await engine.resume_workflow(execution_id, actor="bob", reason="audit done")
        await engine.cancel_workflow(execution_id, "customer asked", actor="cy")
        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.CANCELLED
    interventions = [
        (line.type, line.actor, line.reason)
        for line in engine.ledger.timeline(execution_id)
        if line.intervention
    ]
    assert interventions == [
        ("ExecutionPaused", "ann", "audit hold"),
        ("ExecutionResumed", "bob", "audit done"),
        ("CancelRequested", "cy", "customer asked"),
    ]


async def test_an_engine_that_is_not_governed_records_default_reasons(
    engine: WorkflowEngine,
) -> None:
    gate = Gate()
    engine.action("held")(gate)
    execution_id = await engine.start_workflow(workflow(step("held", "held")))
    await gate.reached()
    await engine.pause_workflow(execution_id)
    await engine.resume_workflow(execution_id)
    await engine.cancel_workflow(execution_id)
    gate.open()
    await engine.wait_for(execution_id, timeout=WAIT)

    reasons = {
        entry.type: entry.data.get("reason") for entry in engine.ledger.history(execution_id)
    }
    assert reasons["ExecutionPaused"] == "requested"
    assert reasons["ExecutionResumed"] is None
    assert reasons["CancelRequested"] == "cancelled"


async def test_a_retry_recorded_before_a_crash_is_carried_out_by_the_next_engine(
    make_engine: Callable[..., WorkflowEngine], store_url: str
) -> None:
    async with make_engine() as engine:
        flaky_action = Flaky(1)
        engine.action("flaky")(flaky_action)
        engine.action("count")(dict)
        failed = await engine.run_workflow(three_steps(retry={"max_attempts": 1}), timeout=WAIT)
    # Recorded as an engine would, then "crashed" before running anything.
    application = LedgerApplication(store_url)
    execution = application.load(failed.execution_id)
    execution.retry_from_failure("ann", "service is back", failed.updated_at)
    application.save(execution)
    application.close()

    recovering = make_engine()  # actions registered before it starts recovering
    recovering.action("flaky")(flaky_action)
    recovering.action("count")(dict)
    async with recovering:
        state = await recovering.wait_for(failed.execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    assert flaky_action.calls == 2
