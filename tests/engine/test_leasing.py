"""Engines sharing a store through leases: claims, takeovers, hand-backs, fencing.

The engines here share one in-process ledger application and one set of in-process
lease rows, which is what several processes on PostgreSQL share; the same behaviour
with real processes on PostgreSQL is in ``tests/integration/test_workers.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from flowledger import ExecutionStatus, StepStatus, WorkflowEngine
from flowledger.engine.leases import MemoryLeases
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.stores import parse_store_url

LEASE = 0.3
WAIT = 10.0

DEFINITION = {
    "id": "shared",
    "steps": [
        {"id": "a", "action": "gated"},
        {"id": "b", "action": "echo", "parameters": {"from_a": "${a.output.call}"}},
    ],
}


class Gate:
    """An action that blocks its first ``blocked`` calls until opened."""

    def __init__(self, blocked: int = 1) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()
        self.calls = 0
        self._blocked = blocked

    async def __call__(self, **_: Any) -> dict[str, int]:
        self.calls += 1
        call = self.calls
        if call <= self._blocked:
            self.reached.set()
            await self.opened.wait()
        return {"call": call}


class Cluster:
    """Engines sharing one ledger and one set of lease rows."""

    def __init__(self, gate: Gate) -> None:
        self.app = LedgerApplication(parse_store_url("memory://"))
        self.leases = MemoryLeases(LEASE)
        self.gate = gate
        self.engines: list[WorkflowEngine] = []

    def engine(self, worker: str, **options: Any) -> WorkflowEngine:
        engine = WorkflowEngine(
            application=self.app,
            leases=self.leases,
            worker_id=worker,
            poll_interval=0.02,
            **options,
        )
        engine.action("gated")(self.gate)
        self.engines.append(engine)
        return engine

    def types(self, execution_id: str) -> list[str]:
        return [entry.type for entry in self.engines[0].ledger.history(execution_id)]

    def entries(self, execution_id: str, kind: str) -> list[dict[str, Any]]:
        history = self.engines[0].ledger.history(execution_id)
        return [entry.data for entry in history if entry.type == kind]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    shared = Cluster(Gate())
    yield shared
    shared.gate.opened.set()
    for engine in shared.engines:
        await engine.stop()
    shared.app.close()


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds (other engines act in their own tasks)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def test_submitted_executions_are_each_claimed_once_and_completed(
    cluster: Cluster,
) -> None:
    cluster.gate.opened.set()
    a, b = cluster.engine("A"), cluster.engine("B")
    await a.start()
    await b.start()
    client = cluster.engine("client", recover=False)
    ids = [await client.start_workflow(DEFINITION, run_here=False) for _ in range(8)]

    states = [await client.wait_for(execution_id, timeout=WAIT) for execution_id in ids]

    assert {state.status for state in states} == {ExecutionStatus.COMPLETED}
    assert {state.worker for state in states} <= {"A", "B"}
    for execution_id in ids:
        types = cluster.types(execution_id)
        assert types.count("ExecutionClaimed") == 1
        assert types.index("ExecutionClaimed") < types.index("StepStarted")
        assert types.count("StepCompleted") == 2
        assert cluster.leases.holder(execution_id) is None  # the row went with the rest


async def test_a_worker_that_stops_renewing_is_taken_over_and_fenced_off(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a = cluster.engine("A")
    execution_id = await a.start_workflow(DEFINITION)
    await asyncio.wait_for(cluster.gate.reached.wait(), WAIT)
    assert a._keeper is not None
    await a._keeper.stop()  # A hangs: its leases are no longer renewed
    b = cluster.engine("B")
    await b.start()

    await until(lambda: "ExecutionTakenOver" in cluster.types(execution_id))
    state = await b.wait_for(execution_id, timeout=WAIT)
    with caplog.at_level(logging.INFO, logger="flowledger"):
        cluster.gate.opened.set()  # A's step ends: its save is refused, and A stops
        await until(lambda: not a._runners)

    assert state.status is ExecutionStatus.COMPLETED
    assert state.worker == "B"
    assert cluster.entries(execution_id, "ExecutionTakenOver") == [
        {"worker": "B", "previous_worker": "A"}
    ]
    types = cluster.types(execution_id)
    assert types.count("StepCompleted") == 2
    assert "StepInterrupted" in types
    assert state.outputs["b"] == {"from_a": 2}  # the step B ran again
    assert any("driven by worker 'B'" in record.getMessage() for record in caplog.records)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_draining_finishes_steps_in_flight_and_hands_the_execution_back(
    cluster: Cluster,
) -> None:
    a = cluster.engine("A")
    execution_id = await a.start_workflow(DEFINITION)
    await asyncio.wait_for(cluster.gate.reached.wait(), WAIT)

    draining = asyncio.create_task(a.drain())
    await asyncio.sleep(0.05)
    assert not draining.done()  # the step in flight is waited for
    cluster.gate.opened.set()
    await asyncio.wait_for(draining, WAIT)
    handed_back = a.ledger.get(execution_id)
    b = cluster.engine("B")
    await b.start()
    state = await b.wait_for(execution_id, timeout=WAIT)

    assert handed_back.steps["a"].status is StepStatus.COMPLETED
    assert handed_back.steps["b"].status is StepStatus.PENDING
    assert handed_back.worker is None
    assert cluster.entries(execution_id, "ExecutionReleased") == [
        {"worker": "A", "reason": "the worker is stopping"}
    ]
    assert cluster.entries(execution_id, "ExecutionClaimed")[-1] == {
        "worker": "B",
        "previous_worker": None,
    }
    assert state.status is ExecutionStatus.COMPLETED
    assert cluster.gate.calls == 1


async def test_a_cancel_from_another_process_reaches_the_worker_driving_it(
    cluster: Cluster,
) -> None:
    a = cluster.engine("A")
    execution_id = await a.start_workflow(DEFINITION)
    await asyncio.wait_for(cluster.gate.reached.wait(), WAIT)
    operator = cluster.engine("operator", recover=False)

    recorded = await operator.cancel_workflow(execution_id, "stop it", actor="ops")
    cluster.gate.opened.set()
    state = await a.wait_for(execution_id, timeout=WAIT)

    assert recorded.cancel_requested
    assert recorded.status is ExecutionStatus.RUNNING  # left to the worker driving it
    assert state.status is ExecutionStatus.CANCELLED
    assert state.steps["a"].status is StepStatus.COMPLETED
    assert state.steps["b"].status is StepStatus.CANCELLED
    assert cluster.types(execution_id).count("StepCompleted") == 1


async def test_a_resumed_execution_is_claimed_by_the_worker_that_resumes_it(
    cluster: Cluster,
) -> None:
    cluster.gate.opened.set()
    a = cluster.engine("A")
    paused = await a.run_workflow(
        {
            "id": "needs",
            "steps": [{"id": "x", "action": "echo", "parameters": {"v": "${input.v}"}}],
        },
        timeout=WAIT,
    )
    assert paused.status is ExecutionStatus.PAUSED
    await until(lambda: cluster.leases.holder(paused.execution_id) is None)  # resting: no row
    b = cluster.engine("B")

    await b.resume_workflow(paused.execution_id, {"v": 1})
    state = await b.wait_for(paused.execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    assert state.worker == "B"
    claims = cluster.entries(paused.execution_id, "ExecutionClaimed")
    assert [claim["worker"] for claim in claims] == ["A", "B"]


async def test_a_lease_lost_on_renewal_stops_the_runner(cluster: Cluster) -> None:
    a = cluster.engine("A")
    execution_id = await a.start_workflow(DEFINITION)
    await asyncio.wait_for(cluster.gate.reached.wait(), WAIT)
    cluster.leases.release(execution_id, "A")
    assert cluster.leases.claim(execution_id, "intruder") is not None

    await until(lambda: not a._runners)

    assert cluster.types(execution_id).count("StepCompleted") == 0


async def test_a_stopped_engine_hands_its_rows_back_and_the_next_claim_names_it(
    cluster: Cluster,
) -> None:
    a = cluster.engine("A")
    execution_id = await a.start_workflow(DEFINITION)
    await asyncio.wait_for(cluster.gate.reached.wait(), WAIT)

    await a.stop()
    b = cluster.engine("B")
    await b.start()
    cluster.gate.opened.set()
    state = await b.wait_for(execution_id, timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    assert cluster.entries(execution_id, "ExecutionClaimed")[-1] == {
        "worker": "B",
        "previous_worker": "A",
    }
    assert "StepInterrupted" in cluster.types(execution_id)


async def test_starting_an_id_another_worker_started_runs_nothing_twice(
    cluster: Cluster,
) -> None:
    cluster.gate.opened.set()
    a, b = cluster.engine("A"), cluster.engine("B")

    first = await a.start_workflow(DEFINITION, execution_id="key")
    second = await b.start_workflow(DEFINITION, execution_id="key")
    state = await a.wait_for("key", timeout=WAIT)

    assert first == second == "key"
    assert state.status is ExecutionStatus.COMPLETED
    assert cluster.types("key").count("ExecutionStarted") == 1
    assert cluster.gate.calls == 1
