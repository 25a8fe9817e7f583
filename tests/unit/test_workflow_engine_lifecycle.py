"""``WorkflowEngine``: an execution from start to end, as callers and auditors see it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from flowledger import (
    ExecutionNotFoundError,
    ExecutionStatus,
    HistoryEntry,
    SchemaValidationError,
    StepStatus,
    WorkflowEngine,
)
from tests.unit.conftest import WAIT, Gate, Recorder, step, types_of, wait, workflow

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}},
}


def two_steps() -> dict[str, Any]:
    return workflow(
        step("first", parameters={"n": "${input.n}"}),
        step("second", parameters={"m": "${first.output.n}"}),
    )


async def collect(engine: WorkflowEngine, execution_id: str | None = None) -> list[Any]:
    """Follow a subscription to its end (one execution) or to the first final status."""
    notes = []
    async for note in engine.subscribe(execution_id):
        notes.append(note)
        if execution_id is None and note.is_final:
            break
    return notes


class TestWorkflowExecutionLifecycle:
    async def test_run_workflow_completes_with_every_steps_output(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(two_steps(), {"n": 7}, timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert state.workflow_id == "wf"
        assert state.input == {"n": 7}
        assert state.outputs == {"first": {"n": 7}, "second": {"m": 7}}
        assert state.error is None
        assert state.paused_on is None

    async def test_step_states_record_status_attempts_durations_and_times(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(two_steps(), {"n": 1}, timeout=WAIT)

        for step_state in state.steps.values():
            assert step_state.status is StepStatus.COMPLETED
            assert step_state.attempts == 1
            assert step_state.error is None
            assert step_state.duration_ms is not None
            assert step_state.duration_ms >= 0
            assert step_state.started_at is not None
            assert step_state.finished_at is not None
            assert state.created_at <= step_state.started_at <= step_state.finished_at
            assert step_state.finished_at <= state.updated_at
        assert state.steps["first"].finished_at <= state.steps["second"].started_at

    async def test_history_runs_from_start_to_completion_on_a_verifying_chain(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(two_steps(), {"n": 1}, timeout=WAIT)
        history = engine.ledger.history(state.execution_id)

        assert types_of(history) == [
            "ExecutionStarted",
            "StepStarted",
            "StepCompleted",
            "StepStarted",
            "StepCompleted",
            "ExecutionCompleted",
        ]
        assert [e.version for e in history] == list(range(1, len(history) + 1))
        assert state.version == len(history)
        assert history[0].data["input"] == {"n": 1}
        assert history[-1].data["outputs"] == state.outputs
        for before, after in itertools.pairwise(history):
            assert after.prev_hash == before.hash
        report = engine.ledger.verify(state.execution_id)
        assert report.ok
        assert report.checked == len(history)

    async def test_start_workflow_with_an_execution_id_runs_the_action_once(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("pay")
        engine.action("pay")(recorder)
        definition = workflow(step("pay", "pay", parameters={"amount": 5}))

        first = await engine.start_workflow(definition, execution_id="order-1")
        await engine.wait_for(first, timeout=WAIT)
        again = await engine.start_workflow(definition, {"other": "input"}, execution_id="order-1")
        state = await engine.wait_for(again, timeout=WAIT)

        assert first == again == "order-1"
        assert len(recorder.calls) == 1
        assert state.input == {}
        assert len(engine.ledger.list()) == 1

    async def test_concurrent_starts_under_one_execution_id_run_it_once(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("pay")
        engine.action("pay")(recorder)
        definition = workflow(step("pay", "pay"))

        ids = await asyncio.gather(
            *(engine.start_workflow(definition, execution_id="same") for _ in range(3))
        )
        state = await engine.wait_for("same", timeout=WAIT)

        assert ids == ["same", "same", "same"]
        assert state.status is ExecutionStatus.COMPLETED
        assert len(recorder.calls) == 1
        assert types_of(engine.ledger.history("same")).count("ExecutionStarted") == 1

    async def test_wait_for_raises_timeout_error_while_the_execution_runs(
        self, engine: WorkflowEngine
    ) -> None:
        gate = Gate()
        engine.action("held")(gate)
        execution_id = await engine.start_workflow(workflow(step("h", "held")))
        await gate.reached()

        with pytest.raises(TimeoutError):
            await engine.wait_for(execution_id, timeout=0.05)

        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)
        assert state.status is ExecutionStatus.COMPLETED

    async def test_an_unknown_execution_is_not_found(self, engine: WorkflowEngine) -> None:
        with pytest.raises(ExecutionNotFoundError):
            await engine.get_workflow_status("no-such-execution")
        with pytest.raises(ExecutionNotFoundError):
            await engine.wait_for("no-such-execution", timeout=WAIT)

    async def test_a_late_subscription_yields_every_status_in_order(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(two_steps(), {"n": 1}, timeout=WAIT)

        notes = await wait(collect(engine, state.execution_id))

        assert [(n.status, n.step_id) for n in notes] == [
            ("RUNNING", None),
            ("STEP_RUNNING", "first"),
            ("STEP_COMPLETED", "first"),
            ("STEP_RUNNING", "second"),
            ("STEP_COMPLETED", "second"),
            ("COMPLETED", None),
        ]
        assert {n.execution_id for n in notes} == {state.execution_id}
        assert [n.version for n in notes] == sorted({n.version for n in notes})
        assert notes[-1].data["outputs"] == state.outputs

    async def test_a_subscription_from_before_the_start_follows_it_live(
        self, engine: WorkflowEngine
    ) -> None:
        following = asyncio.create_task(collect(engine))
        await asyncio.sleep(0)  # let the subscription register before anything happens

        execution_id = await engine.start_workflow(two_steps(), {"n": 2})
        notes = await wait(following)

        assert {n.execution_id for n in notes} == {execution_id}
        assert [n.status for n in notes] == [
            "RUNNING",
            "STEP_RUNNING",
            "STEP_COMPLETED",
            "STEP_RUNNING",
            "STEP_COMPLETED",
            "COMPLETED",
        ]

    async def test_a_subscription_mid_run_catches_up_then_follows_without_repeats(
        self, engine: WorkflowEngine
    ) -> None:
        gate = Gate()
        engine.action("held")(gate)
        execution_id = await engine.start_workflow(
            workflow(step("a"), step("h", "held"), step("c"))
        )
        await gate.reached()

        notes = []
        async for note in engine.subscribe(execution_id):
            notes.append(note)
            if note.status == "STEP_RUNNING" and note.step_id == "h":
                gate.open()  # everything after this point arrives live

        versions = [n.version for n in notes]
        assert versions == sorted(set(versions))
        assert [(n.status, n.step_id) for n in notes][-3:] == [
            ("STEP_RUNNING", "c"),
            ("STEP_COMPLETED", "c"),
            ("COMPLETED", None),
        ]
        assert len(notes) == 8

    async def test_a_subscription_from_a_version_skips_what_came_before(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(two_steps(), {"n": 1}, timeout=WAIT)

        notes = [n async for n in engine.subscribe(state.execution_id, from_version=3)]

        assert [n.version for n in notes] == [4, 5, 6]
        assert [n.status for n in notes] == ["STEP_RUNNING", "STEP_COMPLETED", "COMPLETED"]

    async def test_a_subscription_to_every_execution_ends_when_the_engine_stops(
        self, engine: WorkflowEngine
    ) -> None:
        first = await engine.run_workflow(two_steps(), {"n": 1}, timeout=WAIT)
        seen: list[str] = []

        async def follow() -> None:
            async for note in engine.subscribe():
                seen.append(note.execution_id)
                if len(seen) == 6:
                    await engine.stop()

        await wait(follow())

        assert seen == [first.execution_id] * 6

    async def test_listeners_get_every_history_entry_after_it_is_saved(
        self, engine: WorkflowEngine
    ) -> None:
        from_sync: list[HistoryEntry] = []
        from_async: list[HistoryEntry] = []
        stored_versions: list[int] = []

        def sync_listener(entry: HistoryEntry) -> None:
            stored_versions.append(engine.ledger.get(key).version)
            from_sync.append(entry)

        async def async_listener(entry: HistoryEntry) -> None:
            await asyncio.sleep(0)
            from_async.append(entry)

        key = "listened"
        engine.add_listener(sync_listener)
        engine.add_listener(async_listener)
        state = await engine.run_workflow(two_steps(), {"n": 1}, execution_id=key, timeout=WAIT)

        history = engine.ledger.history(state.execution_id)
        assert from_sync == history
        assert from_async == history
        # Each entry was already in the store when its listener was called.
        assert all(
            stored >= entry.version
            for stored, entry in zip(stored_versions, from_sync, strict=True)
        )

    async def test_a_raising_listener_does_not_break_the_execution(
        self, engine: WorkflowEngine
    ) -> None:
        seen: list[str] = []

        def broken(entry: HistoryEntry) -> None:
            raise RuntimeError("listener bug")

        async def broken_async(entry: HistoryEntry) -> None:
            raise RuntimeError("async listener bug")

        engine.add_listener(broken)
        engine.add_listener(broken_async)
        engine.add_listener(lambda entry: seen.append(entry.type))

        state = await engine.run_workflow(two_steps(), {"n": 1}, timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert seen == types_of(engine.ledger.history(state.execution_id))

    async def test_input_not_matching_the_workflow_schema_is_refused_and_nothing_recorded(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("charge")
        engine.action("charge")(recorder)
        definition = workflow(step("c", "charge"), input_schema=ORDER_SCHEMA)

        with pytest.raises(SchemaValidationError) as raised:
            await engine.start_workflow(definition, {"amount": 0}, execution_id="bad")

        assert raised.value.schema_type == "input"
        paths = {error["path"] for error in raised.value.errors}
        assert paths == {"$", "$.amount"}  # order_id missing, amount below the minimum
        assert engine.ledger.list() == []
        with pytest.raises(ExecutionNotFoundError):
            await engine.get_workflow_status("bad")
        assert recorder.calls == []
