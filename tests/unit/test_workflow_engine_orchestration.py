"""``WorkflowEngine``: which steps run when, in what order, and how many at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flowledger import (
    ExecutionStatus,
    NonRetryableError,
    StepStatus,
    WorkflowEngine,
    load_definition,
)
from tests.unit.conftest import (
    WAIT,
    EventWatcher,
    Gate,
    Recorder,
    entries,
    graph,
    node,
    statuses,
    step,
    version_of,
    wait,
    workflow,
)


class ConcurrencyProbe:
    """An action counting how many of its calls run at once.

    The first ``hold`` calls wait until ``release`` is set; ``full`` is set when that
    many are running together. Later calls yield to the loop a few times, so the engine
    has every chance to start more steps than it should.
    """

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.full = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, **parameters: Any) -> dict[str, Any]:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.running == self.hold:
                self.full.set()
            await asyncio.wait_for(self.release.wait(), WAIT)
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            self.running -= 1
        return {}


def running_steps(engine: WorkflowEngine, execution_id: str) -> int:
    """How many of the execution's steps the store records as RUNNING."""
    steps = engine.ledger.get(execution_id).steps.values()
    return sum(state.status is StepStatus.RUNNING for state in steps)


class TestStepOrchestration:
    async def test_steps_without_depends_on_run_in_list_order(self, engine: WorkflowEngine) -> None:
        log: list[str] = []
        for name in ("a", "b", "c"):
            engine.action(name)(Recorder(name, log))

        state = await engine.run_workflow(
            workflow(step("c", "c"), step("a", "a"), step("b", "b")), timeout=WAIT
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert log == ["c", "a", "b"]
        history = engine.ledger.history(state.execution_id)
        assert version_of(history, "StepCompleted", "c") < version_of(history, "StepStarted", "a")
        assert version_of(history, "StepCompleted", "a") < version_of(history, "StepStarted", "b")

    async def test_roots_run_in_parallel(self, engine: WorkflowEngine) -> None:
        left_here, right_here = asyncio.Event(), asyncio.Event()

        @engine.action("left")
        async def left() -> str:
            left_here.set()
            await asyncio.wait_for(right_here.wait(), WAIT)  # only if both run at once
            return "left"

        @engine.action("right")
        async def right() -> str:
            right_here.set()
            await asyncio.wait_for(left_here.wait(), WAIT)
            return "right"

        state = await engine.run_workflow(
            workflow(step("l", "left", depends_on=[]), step("r", "right", depends_on=[])),
            timeout=WAIT * 2,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs == {"l": "left", "r": "right"}

    async def test_an_explicit_depends_on_lets_a_step_run_beside_the_one_before_it(
        self, engine: WorkflowEngine
    ) -> None:
        after_a = asyncio.Event()

        @engine.action("slow")
        async def slow() -> str:
            await asyncio.wait_for(after_a.wait(), WAIT)  # only returns if "after" ran
            return "slow"

        @engine.action("after")
        async def after() -> str:
            after_a.set()
            return "after"

        state = await engine.run_workflow(
            workflow(
                step("a"),
                step("b", "slow", depends_on=[]),
                step("c", "after", depends_on=["a"]),
            ),
            timeout=WAIT * 2,
        )

        assert state.status is ExecutionStatus.COMPLETED
        history = engine.ledger.history(state.execution_id)
        assert version_of(history, "StepCompleted", "c") < version_of(history, "StepCompleted", "b")

    async def test_max_concurrent_steps_bounds_the_running_steps_of_an_execution(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        probe = ConcurrencyProbe(hold=2)
        definition = workflow(*(step(f"s{i}", "probe", depends_on=[]) for i in range(5)))
        async with make_engine(max_concurrent_steps=2) as engine:
            engine.action("probe")(probe)
            execution_id = await engine.start_workflow(definition)
            await wait(probe.full.wait())
            recorded_running = running_steps(engine, execution_id)
            probe.release.set()
            state = await engine.wait_for(execution_id, timeout=WAIT)

        assert recorded_running == 2
        assert probe.peak == 2
        assert probe.calls == 5
        assert state.status is ExecutionStatus.COMPLETED

    async def test_max_concurrent_steps_bounds_running_steps_across_executions(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        probe = ConcurrencyProbe(hold=2)
        definition = workflow(*(step(f"s{i}", "probe", depends_on=[]) for i in range(3)))
        async with make_engine(max_concurrent_steps=2) as engine:
            engine.action("probe")(probe)
            first = await engine.start_workflow(definition)
            second = await engine.start_workflow(definition)
            await wait(probe.full.wait())
            recorded_running = running_steps(engine, first) + running_steps(engine, second)
            probe.release.set()
            done = [await engine.wait_for(key, timeout=WAIT) for key in (first, second)]

        assert recorded_running == 2
        assert probe.peak == 2
        assert probe.calls == 6
        assert [state.status for state in done] == [ExecutionStatus.COMPLETED] * 2

    async def test_an_execution_waiting_for_a_slot_runs_once_another_frees_it(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        gate = Gate()
        async with make_engine(max_concurrent_steps=1) as engine:
            engine.action("held")(gate)
            holding = await engine.start_workflow(workflow(step("h", "held")))
            await gate.reached()
            waiting = await engine.start_workflow(workflow(step("n", "noop")))
            gate.open()
            await engine.wait_for(holding, timeout=WAIT)
            state = await engine.wait_for(waiting, timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED

    async def test_a_rollback_waits_for_a_slot_held_by_another_execution(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        failing, busy, undone = Gate(), Gate(), Recorder("undo")

        async def explode() -> None:
            await failing()
            raise NonRetryableError("boom")

        async with make_engine(max_concurrent_steps=2) as engine:
            engine.action("explode")(explode)
            engine.action("busy")(busy)
            engine.action("undo")(undone)
            doomed = await engine.start_workflow(
                workflow(
                    step("reserve", compensate={"action": "undo", "parameters": {}}),
                    step("boom", "explode"),
                )
            )
            await failing.reached()  # it holds one slot
            other = await engine.start_workflow(
                workflow(*(step(f"b{i}", "busy", depends_on=[]) for i in range(3)))
            )
            await busy.reached()  # it holds the other slot, and waits for more
            rollback = EventWatcher("RollbackStarted")
            engine.add_listener(rollback)
            failing.open()  # the freed slot goes to the execution that queued first
            await rollback.saved()
            # Both slots are busy: the rollback has started and waits for one.
            waiting = await engine.get_workflow_status(doomed)
            assert waiting.status is ExecutionStatus.ROLLING_BACK
            assert waiting.steps["reserve"].status is StepStatus.COMPLETED
            assert undone.calls == []
            busy.open()
            rolled_back = await engine.wait_for(doomed, timeout=WAIT)
            completed = await engine.wait_for(other, timeout=WAIT)

        assert rolled_back.status is ExecutionStatus.ROLLED_BACK
        assert undone.calls == [{}]
        assert completed.status is ExecutionStatus.COMPLETED

    async def test_a_join_waits_for_every_upstream_step(self, engine: WorkflowEngine) -> None:
        gate = Gate()
        engine.action("held")(gate)
        joined = Recorder("join")
        engine.action("join")(joined)
        fast_done = EventWatcher("StepCompleted", "fast")
        engine.add_listener(fast_done)
        execution_id = await engine.start_workflow(
            workflow(
                step("fast", parameters={"v": 1}, depends_on=[]),
                step("slow", "held", parameters={"v": 2}, depends_on=[]),
                step(
                    "join",
                    "join",
                    parameters={"f": "${fast.output.v}", "s": "${slow.output.v}"},
                    depends_on=["fast", "slow"],
                ),
            )
        )
        await gate.reached()
        await fast_done.saved()

        assert joined.calls == []
        assert engine.ledger.get(execution_id).steps["join"].status is StepStatus.PENDING
        gate.open()
        state = await engine.wait_for(execution_id, timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert joined.calls == [{"f": 1, "s": 2}]

    async def test_a_step_starts_only_once_its_upstream_completion_is_in_the_store(
        self, engine: WorkflowEngine
    ) -> None:
        seen_upstream: list[tuple[str, Any]] = []

        @engine.action("check")
        async def check(upstream: str) -> str:
            state = await asyncio.to_thread(engine.ledger.get, "stored")
            seen_upstream.append((state.steps[upstream].status, state.steps[upstream].output))
            return upstream

        state = await engine.run_workflow(
            workflow(
                step("a", parameters={"x": 1}),
                step("b", "check", parameters={"upstream": "a"}),
                step("c", "check", parameters={"upstream": "b"}),
            ),
            execution_id="stored",
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert seen_upstream == [(StepStatus.COMPLETED, {"x": 1}), (StepStatus.COMPLETED, "a")]

    async def test_ready_steps_start_in_definition_order_when_ties_are_broken(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        log: list[str] = []
        definition = graph(
            [
                {"id": "start", "type": "trigger"},
                node("z", "z"),
                node("b", "b"),
                node("m", "m"),
                node("a", "a"),
            ],
            [
                {"source": "start", "target": "z"},
                {"source": "start", "target": "b"},
                {"source": "m", "target": "a"},
                {"source": "start", "target": "m"},
            ],
        )
        async with make_engine(max_concurrent_steps=1) as engine:
            for name in ("z", "b", "m", "a"):
                engine.action(name)(Recorder(name, log))
            state = await engine.run_workflow(definition, timeout=WAIT)

        assert [s.id for s in load_definition(definition).steps] == ["start", "z", "b", "m", "a"]
        assert log == ["z", "b", "m", "a"]
        assert state.status is ExecutionStatus.COMPLETED

    async def test_independent_steps_start_in_definition_order_one_at_a_time(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        log: list[str] = []
        async with make_engine(max_concurrent_steps=1) as engine:
            for name in ("x", "y", "w"):
                engine.action(name)(Recorder(name, log))
            state = await engine.run_workflow(
                workflow(*(step(name, name, depends_on=[]) for name in ("y", "w", "x"))),
                timeout=WAIT,
            )

        assert log == ["y", "w", "x"]
        history = engine.ledger.history(state.execution_id)
        started = [e.step_id for e in entries(history, "StepStarted")]
        assert started == ["y", "w", "x"]
        assert statuses(state) == {"y": "COMPLETED", "w": "COMPLETED", "x": "COMPLETED"}
