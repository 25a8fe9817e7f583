"""Another writer on the same store: a conflicting save never corrupts the history."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowledger import ExecutionStatus, WorkflowEngine
from flowledger.engine.ledger_app import LedgerApplication


class StoppedWatcher(logging.Handler):
    """Sets an event when the engine reports that an execution's runner stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "stopped: ConcurrencyConflictError" in record.getMessage():
            self.stopped.set()


DEFINITION = {
    "id": "wf",
    "steps": [
        {"id": "a", "action": "held"},
        {"id": "b", "action": "noop"},
    ],
}


async def test_a_save_that_conflicts_leaves_the_store_whole_and_recovers(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    reached, release = asyncio.Event(), asyncio.Event()

    async def held(**_: Any) -> dict[str, Any]:
        reached.set()
        await release.wait()
        return {"done": True}

    watcher = StoppedWatcher()
    logging.getLogger("flowledger.engine.engine").addHandler(watcher)
    engine = WorkflowEngine(url)
    engine.action("held")(held)
    async with engine:
        execution_id = await engine.start_workflow(DEFINITION)
        await asyncio.wait_for(reached.wait(), 5)
        # Another writer (as another process would) records a cancel request first.
        other = LedgerApplication(url, snapshot_interval=0)
        execution = other.load(execution_id)
        execution.request_cancel("operator", "ops", datetime.now(UTC))
        other.save(execution)
        release.set()  # the runner's save of a's completion now conflicts
        await asyncio.wait_for(watcher.stopped.wait(), 5)  # it stops; the store decides
        logging.getLogger("flowledger.engine.engine").removeHandler(watcher)
        stored = engine.ledger.get(execution_id)
        assert stored.cancel_requested
        assert stored.status is ExecutionStatus.RUNNING
        assert engine.ledger.verify(execution_id).ok
    other.close()
    engine.close()

    restarted = WorkflowEngine(url)
    restarted.action("held")(held)
    async with restarted:
        state = await restarted.wait_for(execution_id, timeout=5)
        history = [entry.type for entry in restarted.ledger.history(execution_id)]
        assert restarted.ledger.verify(execution_id).ok
    restarted.close()
    assert state.status is ExecutionStatus.CANCELLED
    assert state.steps["b"].status.value == "CANCELLED"
    assert history.count("CancelRequested") == 1
    # a's outcome was never recorded: on recovery it was interrupted, then cancelled.
    assert "StepInterrupted" in history
