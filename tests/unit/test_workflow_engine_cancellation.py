"""``WorkflowEngine``: cancelling, pausing and resuming executions."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from flowledger import (
    ExecutionNotFoundError,
    ExecutionStatus,
    InvalidTransitionError,
    StepStatus,
    WorkflowEngine,
)
from tests.unit.conftest import (
    WAIT,
    EventWatcher,
    Gate,
    Recorder,
    entries,
    statuses,
    step,
    types_of,
    version_of,
    wait,
    workflow,
)


def held_then_more(**held_options: Any) -> dict[str, Any]:
    """``first`` completes, ``held`` waits on the test's gate, ``later`` comes after."""
    return workflow(
        step("first", parameters={"n": 1}),
        step("held", "held", parameters={"n": 2}, **held_options),
        step("later", "later"),
    )


def needs_input() -> dict[str, Any]:
    """Pauses at ``needs`` for ``input.x``, after ``first`` completed."""
    return workflow(step("first"), step("needs", parameters={"x": "${input.x}"}), step("last"))


async def last_notification(engine: WorkflowEngine, execution_id: str) -> str:
    """Follow the execution's notifications to its end; return the last status."""
    notes = [note.status async for note in engine.subscribe(execution_id)]
    return notes[-1]


class TestCancellationAndPause:
    async def test_cancel_lets_the_in_flight_step_finish_and_starts_nothing_new(
        self, engine: WorkflowEngine
    ) -> None:
        gate, later = Gate(), Recorder("later")
        engine.action("held")(gate)
        engine.action("later")(later)
        execution_id = await engine.start_workflow(held_then_more())
        await gate.reached()

        requested = await engine.cancel_workflow(execution_id, reason="customer asked", actor="ann")
        assert requested.cancel_requested
        assert requested.steps["held"].status is StepStatus.RUNNING
        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.CANCELLED
        assert statuses(state) == {"first": "COMPLETED", "held": "COMPLETED", "later": "CANCELLED"}
        assert state.steps["held"].output == {"gate": "passed", "n": 2}
        assert later.calls == []
        history = engine.ledger.history(execution_id)
        request = entries(history, "CancelRequested")
        assert [(e.data["reason"], e.data["actor"]) for e in request] == [("customer asked", "ann")]
        assert types_of(history)[-1] == "ExecutionCancelled"

    async def test_cancelling_a_finished_execution_is_refused_and_changes_nothing(
        self, engine: WorkflowEngine
    ) -> None:
        done = await engine.run_workflow(workflow(step("one")), timeout=WAIT)

        with pytest.raises(InvalidTransitionError):
            await engine.cancel_workflow(done.execution_id)

        after = await engine.get_workflow_status(done.execution_id)
        assert after.status is ExecutionStatus.COMPLETED
        assert after.version == done.version
        assert after == done

    async def test_cancel_with_rollback_compensates_what_completed(
        self, engine: WorkflowEngine
    ) -> None:
        gate, undone = Gate(), []
        engine.action("held")(gate)
        engine.action("later")(Recorder("later"))

        @engine.action("undo")
        async def undo(n: int) -> None:
            undone.append(n)

        compensate = {"action": "undo", "parameters": {"n": "${held.output.n}"}}
        definition = held_then_more(compensate=compensate)
        definition["steps"][0]["compensate"] = {"action": "undo", "parameters": {"n": 1}}
        execution_id = await engine.start_workflow(definition)
        await gate.reached()

        await engine.cancel_workflow(execution_id, rollback=True)
        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.ROLLED_BACK
        assert undone == [2, 1]
        assert statuses(state) == {
            "first": "ROLLED_BACK",
            "held": "ROLLED_BACK",
            "later": "CANCELLED",
        }

    async def test_an_explicit_pause_holds_new_steps_until_resumed(
        self, engine: WorkflowEngine
    ) -> None:
        gate, later = Gate(), Recorder("later")
        engine.action("held")(gate)
        engine.action("later")(later)
        held_done = EventWatcher("StepCompleted", "held")
        engine.add_listener(held_done)
        execution_id = await engine.start_workflow(held_then_more())
        await gate.reached()

        paused = await engine.pause_workflow(execution_id, reason="maintenance", actor="ops")
        assert paused.status is ExecutionStatus.PAUSED
        gate.open()
        await held_done.saved()
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.PAUSED
        assert state.steps["held"].status is StepStatus.COMPLETED
        assert state.steps["later"].status is StepStatus.PENDING
        assert later.calls == []

        await engine.resume_workflow(execution_id, actor="ops")
        done = await engine.wait_for(execution_id, timeout=WAIT)

        assert done.status is ExecutionStatus.COMPLETED
        assert len(later.calls) == 1
        assert done.steps["held"].attempts == 1
        history = types_of(engine.ledger.history(execution_id))
        assert history.count("ExecutionPaused") == 1
        assert history.count("ExecutionResumed") == 1

    async def test_resuming_a_running_execution_is_refused(self, engine: WorkflowEngine) -> None:
        gate = Gate()
        engine.action("held")(gate)
        engine.action("later")(Recorder("later"))
        execution_id = await engine.start_workflow(held_then_more())
        await gate.reached()
        before = await engine.get_workflow_status(execution_id)

        with pytest.raises(InvalidTransitionError):
            await engine.resume_workflow(execution_id)

        assert (await engine.get_workflow_status(execution_id)) == before
        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)
        assert state.status is ExecutionStatus.COMPLETED
        assert "ExecutionResumed" not in types_of(engine.ledger.history(execution_id))

    async def test_a_refused_resume_records_none_of_its_inputs(
        self, engine: WorkflowEngine
    ) -> None:
        gate = Gate()
        engine.action("held")(gate)
        engine.action("later")(Recorder("later"))
        execution_id = await engine.start_workflow(held_then_more())
        await gate.reached()

        with pytest.raises(InvalidTransitionError):
            await engine.resume_workflow(execution_id, {"extra": 1})

        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)
        assert state.status is ExecutionStatus.COMPLETED
        assert state.input == {}
        assert "InputProvided" not in types_of(engine.ledger.history(execution_id))

    async def test_resuming_or_pausing_a_finished_execution_is_refused(
        self, engine: WorkflowEngine
    ) -> None:
        done = await engine.run_workflow(workflow(step("one")), timeout=WAIT)

        with pytest.raises(InvalidTransitionError):
            await engine.resume_workflow(done.execution_id)
        with pytest.raises(InvalidTransitionError):
            await engine.pause_workflow(done.execution_id)

        assert (await engine.get_workflow_status(done.execution_id)) == done

    async def test_cancelling_a_paused_execution_cancels_it_and_its_paused_step(
        self, engine: WorkflowEngine
    ) -> None:
        paused = await engine.run_workflow(needs_input(), timeout=WAIT)
        assert paused.status is ExecutionStatus.PAUSED

        await engine.cancel_workflow(paused.execution_id)
        final = await wait(last_notification(engine, paused.execution_id))
        state = await engine.get_workflow_status(paused.execution_id)

        assert final == "CANCELLED"
        assert state.status is ExecutionStatus.CANCELLED
        assert statuses(state) == {"first": "COMPLETED", "needs": "CANCELLED", "last": "CANCELLED"}
        with pytest.raises(InvalidTransitionError):
            await engine.resume_workflow(paused.execution_id, {"x": 1})
        assert (await engine.get_workflow_status(paused.execution_id)) == state

    async def test_cancelling_a_paused_execution_ends_it_before_the_call_returns(
        self, engine: WorkflowEngine
    ) -> None:
        paused = await engine.run_workflow(needs_input(), timeout=WAIT)

        returned = await engine.cancel_workflow(paused.execution_id)
        waited = await engine.wait_for(paused.execution_id, timeout=WAIT)

        assert returned.status is ExecutionStatus.CANCELLED
        assert waited.status is ExecutionStatus.CANCELLED

    async def test_commands_on_an_unknown_execution_are_not_found(
        self, engine: WorkflowEngine
    ) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await engine.cancel_workflow("nope")
        with pytest.raises(ExecutionNotFoundError):
            await engine.pause_workflow("nope")
        with pytest.raises(ExecutionNotFoundError):
            await engine.resume_workflow("nope", {"x": 1})
        assert engine.ledger.list() == []

    async def test_a_second_cancel_while_one_is_pending_is_refused(
        self, engine: WorkflowEngine
    ) -> None:
        gate = Gate()
        engine.action("held")(gate)
        engine.action("later")(Recorder("later"))
        execution_id = await engine.start_workflow(held_then_more())
        await gate.reached()
        await engine.cancel_workflow(execution_id)

        with pytest.raises(InvalidTransitionError):
            await engine.cancel_workflow(execution_id)

        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)
        assert state.status is ExecutionStatus.CANCELLED
        assert types_of(engine.ledger.history(execution_id)).count("CancelRequested") == 1

    async def test_cancel_during_a_pending_retry_ends_without_running_the_retry(
        self, engine: WorkflowEngine
    ) -> None:
        calls: list[int] = []
        scheduled = EventWatcher("StepRetryScheduled", "flaky")
        engine.add_listener(scheduled)

        @engine.action("flaky")
        async def flaky() -> None:
            calls.append(1)
            raise ConnectionError("down")

        retry = {"max_attempts": 3, "initial_interval": 30, "jitter": 0}
        execution_id = await engine.start_workflow(workflow(step("flaky", "flaky", retry=retry)))
        await scheduled.saved()

        await engine.cancel_workflow(execution_id)
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.CANCELLED
        assert state.steps["flaky"].attempts == 1
        assert calls == [1]
        assert (
            entries(engine.ledger.history(execution_id), "StepStarted", "flaky")[-1].data["attempt"]
            == 1
        )

    async def test_a_pause_during_a_pending_retry_holds_the_retry_until_resumed(
        self, engine: WorkflowEngine
    ) -> None:
        calls: list[int] = []
        scheduled = EventWatcher("StepRetryScheduled", "flaky")
        engine.add_listener(scheduled)

        @engine.action("flaky")
        async def flaky() -> str:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("down")
            return "ok"

        # Long enough for the pause to be recorded before the retry is due.
        retry = {"max_attempts": 3, "initial_interval": 0.2, "jitter": 0}
        execution_id = await engine.start_workflow(workflow(step("flaky", "flaky", retry=retry)))
        await scheduled.saved()

        paused = await engine.pause_workflow(execution_id)
        held = await engine.wait_for(execution_id, timeout=WAIT)
        assert paused.status is held.status is ExecutionStatus.PAUSED
        assert held.steps["flaky"].status is StepStatus.FAILED
        await engine.resume_workflow(execution_id)
        done = await engine.wait_for(execution_id, timeout=WAIT)

        assert done.status is ExecutionStatus.COMPLETED
        assert done.steps["flaky"].attempts == 2
        history = engine.ledger.history(execution_id)
        resumed = version_of(history, "ExecutionResumed")
        second_start = entries(history, "StepStarted", "flaky")[1].version
        assert second_start > resumed

    async def test_a_cancel_during_a_rollback_does_not_stop_the_rollback(
        self, engine: WorkflowEngine
    ) -> None:
        gate = Gate()
        engine.action("undo")(gate)
        execution_id = await engine.start_workflow(
            workflow(
                step("a", compensate={"action": "undo", "parameters": {"n": 1}}),
                step("b", compensate={"action": "undo", "parameters": {"n": 2}}),
                step("boom", "fail", parameters={"retryable": False}),
            )
        )
        await gate.reached()

        # Refusing the cancel is as good as recording a request the rollback outranks.
        with contextlib.suppress(InvalidTransitionError):
            await engine.cancel_workflow(execution_id)
        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.ROLLED_BACK
        assert gate.calls == [{"n": 2}, {"n": 1}]
        assert statuses(state) == {"a": "ROLLED_BACK", "b": "ROLLED_BACK", "boom": "FAILED"}

    async def test_a_failure_while_paused_is_handled_after_the_resume(
        self, engine: WorkflowEngine
    ) -> None:
        gate, later = Gate(), Recorder("later")
        engine.action("later")(later)
        held_failed = EventWatcher("StepFailed", "held")
        engine.add_listener(held_failed)

        @engine.action("held")
        async def held(n: int) -> None:
            await gate()
            raise PermissionError("refused")

        execution_id = await engine.start_workflow(held_then_more(retry={"max_attempts": 1}))
        await gate.reached()
        await engine.pause_workflow(execution_id)
        gate.open()
        await held_failed.saved()

        still = await engine.get_workflow_status(execution_id)
        assert still.status is ExecutionStatus.PAUSED
        await engine.resume_workflow(execution_id)
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.FAILED
        assert state.error is not None
        assert state.error["type"] == "PermissionError"
        assert later.calls == []

    async def test_cancel_with_rollback_of_a_paused_execution_compensates(
        self, engine: WorkflowEngine
    ) -> None:
        undone: list[int] = []

        @engine.action("undo")
        async def undo(n: int) -> None:
            undone.append(n)

        paused = await engine.run_workflow(
            workflow(
                step("a", compensate={"action": "undo", "parameters": {"n": 1}}),
                step("b", compensate={"action": "undo", "parameters": {"n": 2}}),
                step("needs", parameters={"x": "${input.x}"}),
            ),
            timeout=WAIT,
        )
        assert paused.status is ExecutionStatus.PAUSED

        await engine.cancel_workflow(paused.execution_id, rollback=True)
        final = await wait(last_notification(engine, paused.execution_id))

        assert final == "ROLLED_BACK"
        assert undone == [2, 1]
        state = await engine.get_workflow_status(paused.execution_id)
        assert statuses(state) == {"a": "ROLLED_BACK", "b": "ROLLED_BACK", "needs": "CANCELLED"}


class TestRetriesAcrossAPause:
    async def test_a_step_failing_while_paused_keeps_its_retries(
        self, engine: WorkflowEngine
    ) -> None:
        gate, tries = Gate(), []

        async def flaky(**_: Any) -> dict[str, Any]:
            tries.append(1)
            if len(tries) == 1:
                await gate()
                raise ConnectionError("network down")
            return {"ok": True}

        engine.action("flaky")(flaky)
        retry = {"max_attempts": 3, "initial_interval": 0.01}
        execution_id = await engine.start_workflow(workflow(step("a", "flaky", retry=retry)))
        await gate.reached()
        paused = await engine.pause_workflow(execution_id)
        assert paused.status is ExecutionStatus.PAUSED
        scheduled = EventWatcher("StepRetryScheduled", "a")
        engine.add_listener(scheduled)
        gate.open()  # the attempt fails while the execution is paused
        await scheduled.saved()
        await engine.resume_workflow(execution_id)
        state = await engine.wait_for(execution_id, timeout=WAIT)
        assert state.status is ExecutionStatus.COMPLETED
        assert state.steps["a"].attempts == 2
