"""Ceilings for the engine's throughput: the same durable work with no engine at all.

Each floor keeps one part of what a step costs and drops everything else, so the engine
can be read against what it cannot avoid on this machine:

- :func:`handover_rate`: an event loop awaiting a writer thread for each 2-row commit
  (no domain, no eventsourcing): the ceiling of a sequence of durable steps written from
  a thread the loop never blocks on.
- :func:`domain_rate`: the two domain commands of each step (``start_step``,
  ``complete_step``: events, hash-chain links, state), no store and no engine.
- :func:`store_rate`: the same commands, saved through ``LedgerApplication.save_events``
  ``steps_per_save`` steps to a transaction, in one thread, no event loop.

A floor that misses a target shows that no engine built on that part can meet it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from provenance import raw_event_table

from flowledger import load_definition
from flowledger.domain.execution import Execution
from flowledger.engine.ledger_app import LedgerApplication

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def steps_definition(workflow_id: str, steps: int) -> dict[str, Any]:
    """A sequence of ``noop`` steps (steps format, no depends_on: each after the last)."""
    return {"id": workflow_id, "steps": [{"id": f"s{i}", "action": "noop"} for i in range(steps)]}


def run_steps(execution: Execution, step_ids: list[str], at: datetime) -> datetime:
    """Start and complete each step in turn, 1 ms apart; return the last time used."""
    for step_id in step_ids:
        execution.start_step(step_id, {}, at := at + timedelta(milliseconds=1))
        execution.complete_step(step_id, {}, 0.5, at := at + timedelta(milliseconds=1))
    return at


def _started(executions: int, steps: int) -> tuple[list[Execution], list[str]]:
    definition = load_definition(steps_definition("floor", steps))
    started = [Execution.start(f"floor-{n}", definition, {}, EPOCH) for n in range(executions)]
    return started, [step.id for step in definition.steps]


def domain_rate(executions: int, steps: int) -> float:
    """Steps/s of the domain commands alone, ``executions`` executions taking turns."""
    started, step_ids = _started(executions, steps)
    for execution in started:
        execution.collect_events()
    begin = time.perf_counter()
    for step_id in step_ids:
        for execution in started:
            run_steps(execution, [step_id], EPOCH)
            execution.collect_events()
    return executions * steps / (time.perf_counter() - begin)


def store_rate(path: Path, executions: int, steps: int, steps_per_save: int) -> float:
    """Steps/s of the domain commands saved ``steps_per_save`` steps per transaction.

    With one execution and one step per save, each save holds a step's completion and
    the next step's start, as the engine's saves of a sequence do.
    """
    started, step_ids = _started(executions, steps)
    app = LedgerApplication(f"sqlite:///{path}", snapshot_interval=0)
    try:
        app.save_events([event for execution in started for event in execution.collect_events()])
        pending: list[Any] = []
        begin = time.perf_counter()
        for step_id in step_ids:
            for execution in started:
                run_steps(execution, [step_id], EPOCH)
                pending.extend(execution.collect_events())
                if len(pending) >= 2 * steps_per_save:
                    app.save_events(pending)
                    pending = []
        if pending:
            app.save_events(pending)
        return executions * steps / (time.perf_counter() - begin)
    finally:
        app.close()


def handover_rate(path: Path, commits: int) -> float:
    """Commits/s when an event loop awaits a writer thread for each 2-row commit."""
    con = raw_event_table(path)
    requests: queue.SimpleQueue[tuple[Any, Any, int] | None] = queue.SimpleQueue()
    blob, key = os.urandom(200), uuid4().hex

    def writer() -> None:
        while (request := requests.get()) is not None:
            loop, future, version = request
            con.execute("BEGIN")
            for offset in (0, 1):
                con.execute(
                    "INSERT INTO stored_events VALUES (?, ?, ?, ?)",
                    (key, version + offset, "t", blob),
                )
            con.execute("COMMIT")
            loop.call_soon_threadsafe(future.set_result, None)

    async def sequence() -> float:
        loop = asyncio.get_running_loop()
        begin = time.perf_counter()
        for n in range(commits):
            future = loop.create_future()
            requests.put((loop, future, 2 * n + 1))
            await future
        return commits / (time.perf_counter() - begin)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        return asyncio.run(sequence())
    finally:
        requests.put(None)
        thread.join()
        con.close()
