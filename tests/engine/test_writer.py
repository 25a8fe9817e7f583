"""Group commit: many executions' events saved in shared transactions, on one thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from flowledger.domain.execution import Execution, execution_uuid
from flowledger.engine.writer import LedgerWriter
from tests.domain.factories import at, sqlite_app, started


class AppStore:
    """The writer's view of an eventsourcing application (as the ledger provides it)."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.saves = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def save_events(self, events: Sequence[Any]) -> None:
        self.saves += 1
        if self.gate is not None and self.saves == 1:
            self.entered.set()
            self.gate.wait(timeout=10)
        self.app.save(*events)

    def snapshot_of(self, execution: Execution) -> Any:
        return Execution.Snapshot.take(execution)

    def record_snapshot(self, snapshot: Any) -> None:
        assert self.app.snapshots is not None
        self.app.snapshots.put([snapshot])


def new_execution(name: str) -> Execution:
    return started("a", "b", execution_id=name)


@pytest.fixture
def store(tmp_path: Path) -> AppStore:
    return AppStore(sqlite_app(tmp_path, snapshot_every=5))


@pytest.fixture
def writer(store: AppStore):
    writer = LedgerWriter(store, snapshot_interval=5)
    writer.start()
    yield writer
    writer.stop()


async def test_saved_events_are_durable_and_returned(store: AppStore, writer: LedgerWriter) -> None:
    execution = new_execution("one")
    execution.start_step("a", {"x": 1}, at(1))
    saved = await writer.save(execution)
    assert [event.originator_version for event in saved] == [1, 2]
    reloaded = store.app.repository.get(execution_uuid("one"))
    assert reloaded.state() == execution.state()


async def test_concurrent_saves_share_transactions(store: AppStore, writer: LedgerWriter) -> None:
    store.gate = threading.Event()
    executions = [new_execution(f"e{index}") for index in range(50)]
    pending = [asyncio.ensure_future(writer.save(execution)) for execution in executions]
    await asyncio.sleep(0)  # let every save enqueue its request
    store.gate.set()
    results = await asyncio.gather(*pending)
    assert all(len(events) == 1 for events in results)
    # The first transaction is held open until all 50 requests are queued, so at most
    # one more transaction takes everything that queued behind it.
    assert writer.batches <= 2
    for execution in executions:
        assert store.app.repository.get(execution.id).version == 1


async def test_a_conflict_fails_only_its_own_request(store: AppStore, writer: LedgerWriter) -> None:
    original = new_execution("conflicted")
    await writer.save(original)
    copy_a = store.app.repository.get(original.id)
    copy_b = store.app.repository.get(original.id)
    copy_a.start_step("a", {}, at(1))
    copy_b.start_step("a", {}, at(2))
    bystander = new_execution("bystander")
    store.gate = threading.Event()
    store.saves = 0
    first = asyncio.ensure_future(writer.save(new_execution("first")))
    racing = [asyncio.ensure_future(writer.save(e)) for e in (copy_a, bystander, copy_b)]
    await asyncio.sleep(0)
    store.gate.set()
    await first
    outcomes = await asyncio.gather(*racing, return_exceptions=True)
    assert isinstance(outcomes[2], IntegrityError)
    assert [len(outcome) for outcome in outcomes[:2]] == [1, 1]
    stored = store.app.repository.get(original.id)
    assert stored.state().steps["a"].started_at == at(1)
    assert store.app.repository.get(bystander.id).version == 1


async def test_snapshots_are_taken_when_a_save_crosses_the_interval(
    store: AppStore, writer: LedgerWriter
) -> None:
    execution = new_execution("snap")
    execution.start_step("a", {}, at(1))
    await writer.save(execution)  # versions 1-2: no snapshot yet
    await writer.save(new_execution("barrier-1"))  # the writer finished the previous batch
    assert store.app.snapshots is not None
    assert list(store.app.snapshots.get(execution.id)) == []
    execution.complete_step("a", {"ok": True}, 5.0, at(2))
    execution.start_step("b", {}, at(3))
    execution.complete_step("b", [1, 2], 5.0, at(4))
    await writer.save(execution)  # versions 3-5: crosses 5
    # The snapshot is stored just after the save is released; one more save through the
    # writer's single thread is done only once it is.
    await writer.save(new_execution("barrier-2"))
    snapshots = list(store.app.snapshots.get(execution.id))
    assert [snapshot.originator_version for snapshot in snapshots] == [5]
    assert store.app.repository.get(execution.id) == execution


async def test_a_failing_snapshot_is_logged_without_payloads(
    store: AppStore, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(execution: Execution) -> None:
        raise ValueError("secret-card-number")

    store.snapshot_of = refuse  # type: ignore[method-assign]
    writer = LedgerWriter(store, snapshot_interval=1)
    writer.start()
    try:
        execution = new_execution("logged")
        with caplog.at_level(logging.WARNING):
            saved = await writer.save(execution)
    finally:
        writer.stop()
    assert len(saved) == 1
    assert "snapshot of execution logged at version 1 failed: ValueError" in caplog.text
    assert "secret-card-number" not in caplog.text


async def test_nothing_pending_saves_nothing(store: AppStore, writer: LedgerWriter) -> None:
    execution = new_execution("quiet")
    await writer.save(execution)
    assert await writer.save(execution) == []
    assert writer.batches == 1


async def test_saving_needs_a_running_writer(store: AppStore) -> None:
    writer = LedgerWriter(store)
    with pytest.raises(RuntimeError, match="not running"):
        await writer.save(new_execution("early"))
    writer.start()
    writer.start()  # idempotent
    writer.stop()
    writer.stop()


async def test_stop_writes_what_was_queued(store: AppStore) -> None:
    writer = LedgerWriter(store)
    writer.start()
    store.gate = threading.Event()
    executions = [new_execution(f"q{index}") for index in range(5)]
    pending = [asyncio.ensure_future(writer.save(execution)) for execution in executions]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.to_thread(writer.stop)
    await asyncio.gather(*pending)
    for execution in executions:
        assert store.app.repository.get(execution.id).version == 1


async def test_requests_queued_before_stop_are_written_with_it(store: AppStore) -> None:
    writer = LedgerWriter(store)
    writer.start()
    store.gate = threading.Event()
    first = asyncio.ensure_future(writer.save(new_execution("held")))
    await asyncio.to_thread(store.entered.wait, 10)  # the writer is inside the first commit
    behind = [asyncio.ensure_future(writer.save(new_execution(f"b{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(asyncio.to_thread(writer.stop))
    store.gate.set()
    await stopping
    await asyncio.gather(first, *behind)
    assert store.saves == 2


async def test_a_cancelled_caller_leaves_the_writer_working(
    store: AppStore, writer: LedgerWriter
) -> None:
    store.gate = threading.Event()
    cancelled = asyncio.ensure_future(writer.save(new_execution("gone")))
    await asyncio.to_thread(store.entered.wait, 10)
    cancelled.cancel()
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert len(await writer.save(new_execution("next"))) == 1
    assert store.app.repository.get(execution_uuid("gone")).version == 1
