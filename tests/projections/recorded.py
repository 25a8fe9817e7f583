"""Read-model tests, fed by executions that real engines run on SQLite files.

Shared here: :func:`record_every_status`, which leaves one execution in each status an
execution can be seen in (all but PENDING, which no recorded execution is ever in).
"""

from __future__ import annotations

from typing import Any

from flowledger import ExecutionStatus, WorkflowEngine
from tests.unit.conftest import NO_RETRY, WAIT, Gate, step, workflow


def failing(step_id: str = "boom") -> dict[str, Any]:
    """A step that fails at once, without retries."""
    return step(step_id, "fail", parameters={"message": "no", "retryable": False}, retry=NO_RETRY)


async def record_every_status(engine: WorkflowEngine) -> dict[ExecutionStatus, str]:
    """Run one execution into each status; return its id by status.

    The RUNNING and ROLLING_BACK ones are held in flight by gates that are never opened
    (stopping the engine leaves them as they are recorded).
    """
    held, compensation, cancelled = Gate(), Gate(), Gate()
    engine.action("held")(held)
    engine.action("undo_held")(compensation)
    engine.action("cancelled")(cancelled)
    ids: dict[ExecutionStatus, str] = {}

    async def run(status: ExecutionStatus, definition: dict[str, Any], **data: Any) -> None:
        state = await engine.run_workflow(definition, data or None, timeout=WAIT)
        assert state.status is status
        ids[status] = state.execution_id

    await run(ExecutionStatus.COMPLETED, workflow(step("a"), step("b"), workflow_id="shop"))
    await run(ExecutionStatus.FAILED, workflow(step("a"), failing(), workflow_id="shop"))
    await run(
        ExecutionStatus.PAUSED,
        workflow(step("ask", parameters={"who": "${input.name}"}), workflow_id="forms"),
    )
    compensable = step("a", compensate={"action": "echo"})
    await run(ExecutionStatus.ROLLED_BACK, workflow(compensable, failing(), workflow_id="pay"))
    undo_fails = step("a", compensate={"action": "fail", "parameters": {"message": "x"}})
    await run(ExecutionStatus.ROLLBACK_FAILED, workflow(undo_fails, failing(), workflow_id="pay"))

    ids[ExecutionStatus.CANCELLED] = await engine.start_workflow(
        workflow(step("c", "cancelled"), step("after"), workflow_id="forms")
    )
    await cancelled.reached()
    await engine.cancel_workflow(ids[ExecutionStatus.CANCELLED], reason="test")
    cancelled.open()
    state = await engine.wait_for(ids[ExecutionStatus.CANCELLED], timeout=WAIT)
    assert state.status is ExecutionStatus.CANCELLED

    ids[ExecutionStatus.ROLLING_BACK] = await engine.start_workflow(
        workflow(step("a", compensate={"action": "undo_held"}), failing(), workflow_id="pay")
    )
    await compensation.reached()
    ids[ExecutionStatus.RUNNING] = await engine.start_workflow(
        workflow(step("h", "held"), workflow_id="shop")
    )
    await held.reached()
    return ids
