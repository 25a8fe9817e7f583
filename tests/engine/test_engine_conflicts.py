"""Another writer on the same store: a conflicting save never corrupts the history."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowledger import ExecutionStatus, StepStatus, WorkflowEngine
from flowledger.engine.ledger_app import LedgerApplication


class Complaints(logging.Handler):
    """Keeps the warnings and errors the engine logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


DEFINITION = {
    "id": "wf",
    "steps": [
        {"id": "a", "action": "held"},
        {"id": "b", "action": "noop"},
    ],
}


async def test_a_command_another_process_records_first_is_applied_live(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    reached, release = asyncio.Event(), asyncio.Event()

    async def held(**_: Any) -> dict[str, Any]:
        reached.set()
        await release.wait()
        return {"done": True}

    complaints = Complaints()
    logging.getLogger("flowledger").addHandler(complaints)
    engine = WorkflowEngine(url)
    engine.action("held")(held)
    try:
        async with engine:
            execution_id = await engine.start_workflow(DEFINITION)
            await asyncio.wait_for(reached.wait(), 5)
            # Another writer (as another process would) records a cancel request first.
            other = LedgerApplication(url, snapshot_interval=0)
            execution = other.load(execution_id)
            execution.request_cancel("operator", "ops", datetime.now(UTC))
            other.save(execution)
            other.close()
            release.set()  # the runner's save of a's completion conflicts: it reloads
            state = await engine.wait_for(execution_id, timeout=5)
            history = [entry.type for entry in engine.ledger.history(execution_id)]
            assert engine.ledger.verify(execution_id).ok
    finally:
        logging.getLogger("flowledger").removeHandler(complaints)
        engine.close()

    assert state.status is ExecutionStatus.CANCELLED
    assert state.steps["a"].status is StepStatus.COMPLETED  # in flight: it finished
    assert state.steps["b"].status is StepStatus.CANCELLED  # nothing new started
    assert history.count("CancelRequested") == 1
    assert history.count("StepCompleted") == 1
    assert "StepInterrupted" not in history
    assert complaints.records == []
