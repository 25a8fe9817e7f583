"""``WorkflowEngine``: a new engine on the same file finishes what a stopped one left."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flowledger import ExecutionStatus, Ledger, StepStatus, WorkflowEngine, load_definition
from flowledger.domain.execution import Execution
from flowledger.engine.ledger_app import LedgerApplication
from tests.unit.conftest import (
    WAIT,
    EventWatcher,
    Gate,
    Recorder,
    entries,
    statuses,
    step,
    types_of,
    wait,
    workflow,
)

Make = Callable[..., WorkflowEngine]


def three_steps() -> dict[str, Any]:
    return workflow(
        step("first", "first", parameters={"n": 1}),
        step("held", "held", parameters={"n": "${first.output.n}"}),
        step("last", parameters={"got": "${held.output.n}"}),
    )


def engine_with(make_engine: Make, **actions: Any) -> WorkflowEngine:
    """A new engine on the test's store with these actions registered (before it starts,
    since starting recovers unfinished executions)."""
    engine = make_engine()
    for name, action in actions.items():
        engine.action(name)(action)
    return engine


async def stopped_while_held(make_engine: Make, definition: dict[str, Any]) -> tuple[str, Recorder]:
    """Run ``definition`` until ``held`` is in flight, then stop the engine."""
    first, gate = Recorder("first"), Gate()
    async with engine_with(make_engine, first=first, held=gate) as engine:
        execution_id = await engine.start_workflow(definition)
        await gate.reached()
    return execution_id, first


class TestRecovery:
    async def test_a_step_in_flight_at_shutdown_is_interrupted_and_run_again(
        self, make_engine: Make
    ) -> None:
        execution_id, first = await stopped_while_held(make_engine, three_steps())
        rerun = Recorder("held")

        async with engine_with(make_engine, first=first, held=rerun) as engine:
            state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs["last"] == {"got": 1}
        assert state.steps["held"].attempts == 1  # the interrupted attempt ran again
        assert rerun.calls == [{"n": 1}]
        assert len(first.calls) == 1  # a recorded completion is never repeated
        history = engine.ledger.history(execution_id)
        interrupted = entries(history, "StepInterrupted")
        assert [(e.step_id, e.data["attempt"]) for e in interrupted] == [("held", 1)]
        restarted = [
            e.data["attempt"] for e in entries(history, "StepStarted") if e.step_id == "held"
        ]
        assert restarted == [1, 1]
        assert engine.ledger.verify(execution_id).ok

    async def test_a_wait_pending_when_the_engine_stops_ends_instead_of_hanging(
        self, make_engine: Make
    ) -> None:
        gate = Gate()
        engine = engine_with(make_engine, held=gate)
        await engine.start()
        execution_id = await engine.start_workflow(workflow(step("held", "held")))
        await gate.reached()
        waiting = asyncio.create_task(engine.wait_for(execution_id))
        await asyncio.sleep(0)  # let the wait begin

        await engine.stop()
        (outcome,) = await wait(asyncio.gather(waiting, return_exceptions=True))

        assert isinstance(outcome, BaseException)
        assert waiting.done()

    async def test_the_store_keeps_the_step_running_between_engines(
        self, make_engine: Make, store_url: str
    ) -> None:
        execution_id, _ = await stopped_while_held(make_engine, three_steps())
        with Ledger(store_url) as ledger:
            state = ledger.get(execution_id)

        assert state.status is ExecutionStatus.RUNNING
        assert statuses(state) == {"first": "COMPLETED", "held": "RUNNING", "last": "PENDING"}

    async def test_a_pending_retry_keeps_its_recorded_time_after_a_restart(
        self, make_engine: Make
    ) -> None:
        retry = {"max_attempts": 3, "initial_interval": 0.3, "jitter": 0}
        definition = workflow(step("flaky", "flaky", retry=retry))
        scheduled = EventWatcher("StepRetryScheduled", "flaky")

        async def down() -> None:
            raise ConnectionError("down")

        async with engine_with(make_engine, flaky=down) as engine:
            engine.add_listener(scheduled)
            execution_id = await engine.start_workflow(definition)
            await scheduled.saved()

        restarted_at = datetime.now(UTC)
        async with engine_with(make_engine, flaky=Recorder("flaky")) as engine:
            state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        history = engine.ledger.history(execution_id)
        (retry_entry,) = entries(history, "StepRetryScheduled")
        not_before = retry_entry.data["not_before"]
        assert restarted_at < not_before  # the restart came before the retry was due
        second = entries(history, "StepStarted", "flaky")[1]
        assert second.timestamp >= not_before

    async def test_a_cancel_requested_before_shutdown_is_carried_out_after_it(
        self, make_engine: Make
    ) -> None:
        gate = Gate()
        async with engine_with(make_engine, first=Recorder("first"), held=gate) as engine:
            execution_id = await engine.start_workflow(three_steps())
            await gate.reached()
            await engine.cancel_workflow(execution_id)

        rerun = Recorder("held")
        async with engine_with(make_engine, first=Recorder("first"), held=rerun) as engine:
            state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.CANCELLED
        assert rerun.calls == []
        assert statuses(state)["last"] == "CANCELLED"

    async def test_paused_and_finished_executions_are_left_as_they_are(
        self, make_engine: Make
    ) -> None:
        async with make_engine() as engine:
            done = await engine.run_workflow(workflow(step("one")), timeout=WAIT)
            paused = await engine.run_workflow(
                workflow(step("needs", parameters={"x": "${input.x}"})), timeout=WAIT
            )

        async with make_engine() as engine:
            assert await engine.get_workflow_status(done.execution_id) == done
            assert await engine.get_workflow_status(paused.execution_id) == paused
            await engine.resume_workflow(paused.execution_id, {"x": 5})
            resumed = await engine.wait_for(paused.execution_id, timeout=WAIT)

        assert resumed.status is ExecutionStatus.COMPLETED
        assert resumed.outputs == {"needs": {"x": 5}}

    async def test_every_unfinished_execution_is_recovered(self, make_engine: Make) -> None:
        gate = Gate()
        async with engine_with(make_engine, held=gate) as engine:
            ids = [
                await engine.start_workflow(workflow(step("held", "held", parameters={"i": i})))
                for i in range(3)
            ]
            while len(gate.calls) < 3:
                gate.entered.clear()
                await gate.reached()

        rerun = Recorder("held")
        async with engine_with(make_engine, held=rerun) as engine:
            states = await asyncio.gather(*(engine.wait_for(i, timeout=WAIT) for i in ids))

        assert [s.status for s in states] == [ExecutionStatus.COMPLETED] * 3
        assert sorted(call["i"] for call in rerun.calls) == [0, 1, 2]

    async def test_an_engine_that_does_not_recover_runs_only_what_it_is_given(
        self, make_engine: Make
    ) -> None:
        gate = Gate()
        async with engine_with(make_engine, held=gate) as engine:
            left, paused = [
                await engine.start_workflow(workflow(step("held", "held")), execution_id=key)
                for key in ("left", "paused")
            ]
            while len(gate.calls) < 2:
                gate.entered.clear()
                await gate.reached()
            await engine.pause_workflow(paused)

        rerun = Recorder("held")
        bystander = make_engine(recover=False)
        bystander.action("held")(rerun)
        async with bystander as engine:
            resumed = await engine.resume_workflow(paused)
            state = await engine.wait_for(resumed.execution_id, timeout=WAIT)
            untouched = await engine.get_workflow_status(left)

        assert state.status is ExecutionStatus.COMPLETED
        assert untouched.status is ExecutionStatus.RUNNING
        assert entries(engine.ledger.history(left), "StepInterrupted") == []
        assert len(rerun.calls) == 1

    async def test_an_engine_that_does_not_recover_leaves_steps_in_flight_alone(
        self, make_engine: Make
    ) -> None:
        gate = Gate()
        async with engine_with(make_engine, held=gate) as owner:
            execution_id = await owner.start_workflow(workflow(step("held", "held")))
            await gate.reached()
            async with make_engine(recover=False) as bystander:
                state = await bystander.pause_workflow(execution_id, actor="ops")
            history = owner.ledger.history(execution_id)

        assert state.status is ExecutionStatus.PAUSED
        assert state.steps["held"].status is StepStatus.RUNNING
        assert types_of(history)[-1] == "ExecutionPaused"
        assert entries(history, "StepInterrupted") == []

    async def test_a_failure_stored_without_its_retry_decision_is_retried_on_recovery(
        self, make_engine: Make, store_url: str
    ) -> None:
        definition = load_definition(
            workflow(step("flaky", "flaky", retry={"max_attempts": 2, "initial_interval": 0}))
        )
        execution = Execution.start("cut", definition, {}, datetime.now(UTC))
        execution.start_step("flaky", {}, datetime.now(UTC))
        error = {"type": "ConnectionError", "message": "reset", "retryable": True}
        execution.fail_step("flaky", error, True, 1.0, datetime.now(UTC))
        with LedgerApplication(store_url) as app:  # a history that ends at the failure
            app.save(execution)

        rerun = Recorder("flaky")
        async with engine_with(make_engine, flaky=rerun) as engine:
            state = await engine.wait_for("cut", timeout=WAIT)
            history = engine.ledger.history("cut")

        assert state.status is ExecutionStatus.COMPLETED
        assert state.steps["flaky"].attempts == 2
        assert [e.data["next_attempt"] for e in entries(history, "StepRetryScheduled")] == [2]

    async def test_a_compensation_in_flight_at_shutdown_is_run_again(
        self, make_engine: Make
    ) -> None:
        gate = Gate()
        definition = workflow(
            step("reserve", compensate={"action": "undo", "parameters": {"n": 1}}),
            step("boom", "fail", parameters={"retryable": False}),
        )
        async with engine_with(make_engine, undo=gate) as engine:
            execution_id = await engine.start_workflow(definition)
            await gate.reached()

        undo = Recorder("undo")
        async with engine_with(make_engine, undo=undo) as engine:
            state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.ROLLED_BACK
        assert state.steps["reserve"].status is StepStatus.ROLLED_BACK
        assert undo.calls == [{"n": 1}]
        assert "ExecutionRolledBack" in types_of(engine.ledger.history(execution_id))
