"""The ledger's read models on real SQLite files: catch-up, restarts, crashes, rebuilds."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from eventsourcing.persistence import Notification

from flowledger import ExecutionStatus, WorkflowEngine
from flowledger.domain.execution import execution_uuid
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.stores import parse_store_url
from flowledger.engine.views import LedgerViews, ViewsLocation, scan_executions, views_location
from flowledger.errors import StoreError
from flowledger.projections.execution_index import ExecutionQuery, IndexedExecution
from flowledger.projections.step_metrics import StepMetrics
from flowledger.projections.view_store import LoggedEvent
from tests.unit.conftest import FAST_RETRY, WAIT, step, workflow

ROOT = Path(__file__).resolve().parents[2]


async def run_some(engine: WorkflowEngine, count: int, first: int = 0) -> None:
    """Run ``count`` executions over two workflows; every third one fails after retries."""
    flaky = step("pay", "fail", parameters={"message": "x", "retryable": True}, retry=FAST_RETRY)
    for n in range(first, first + count):
        steps = [step("a"), step("b", "noop")] + ([flaky] if n % 3 == 0 else [])
        definition = workflow(*steps, workflow_id=f"wf-{n % 2}")
        await engine.run_workflow(definition, {"n": n}, execution_id=f"ex-{n:03d}", timeout=WAIT)


def snapshot(views: LedgerViews) -> tuple[list[IndexedExecution], list[StepMetrics]]:
    return views.executions(ExecutionQuery()), views.metrics()


def fresh(
    app: LedgerApplication, tmp_path: Path
) -> tuple[list[IndexedExecution], list[StepMetrics]]:
    """What views built from scratch, in a file of their own, hold."""
    views = LedgerViews(app, location=ViewsLocation(str(tmp_path / "fresh.views.db")))
    try:
        return snapshot(views)
    finally:
        views.close()


async def test_listing_catches_up_incrementally(engine: WorkflowEngine, url: str) -> None:
    await run_some(engine, 4)
    with Ledger(url) as ledger:
        assert [s.execution_id for s in ledger.list()] == ["ex-003", "ex-002", "ex-001", "ex-000"]
        before = {(m.workflow_id, m.action): m.count for m in ledger.metrics()}
        assert before == {
            ("wf-0", "echo"): 2,
            ("wf-0", "noop"): 2,
            ("wf-0", "fail"): 3,  # ex-000 and its two retries
            ("wf-1", "echo"): 2,
            ("wf-1", "noop"): 2,
            ("wf-1", "fail"): 3,  # ex-003
        }
        await run_some(engine, 3, first=4)
        assert [s.execution_id for s in ledger.list(limit=2)] == ["ex-006", "ex-005"]
        assert [s.execution_id for s in ledger.list(workflow_id="wf-1", status="FAILED")] == [
            "ex-003"
        ]
        after = {(m.workflow_id, m.action): m.count for m in ledger.metrics()}
        assert after[("wf-0", "echo")] == 4
        assert after[("wf-0", "fail")] == 6
        assert after[("wf-1", "fail")] == 3


async def test_a_restart_resumes_without_counting_twice(
    engine: WorkflowEngine, url: str, tmp_path: Path
) -> None:
    await run_some(engine, 5)
    with Ledger(url) as ledger:
        first = (ledger.list(limit=None), ledger.metrics())
    with Ledger(url) as reopened:
        assert (reopened.list(limit=None), reopened.metrics()) == first
        await run_some(engine, 2, first=5)
        views = reopened._read_models()
        assert snapshot(views) == fresh(reopened.application, tmp_path)


CATCH_UP_CHILD = """
import sys
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.views import LedgerViews

class Reporting(LedgerViews):
    def _decoded(self, page):
        print(page[-1].id, flush=True)  # a page is about to be recorded
        return super()._decoded(page)

Reporting(LedgerApplication(sys.argv[1]), page_size=int(sys.argv[2])).catch_up()
print("done", flush=True)
"""


def catch_up_killed(url: str, pages: int, page_size: int) -> None:
    """Catch up in another process, killed (SIGKILL) after it reported ``pages`` pages."""
    child = subprocess.Popen(
        [sys.executable, "-c", CATCH_UP_CHILD, url, str(page_size)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    for _ in range(pages):
        if child.stdout.readline() in {"", "done\n"}:
            break
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=WAIT * 10)


@pytest.mark.slow
async def test_catching_up_killed_at_random_moments_loses_and_repeats_nothing(
    engine: WorkflowEngine, url: str, tmp_path: Path
) -> None:
    await run_some(engine, 30)
    app = engine.ledger.application
    end = app.recorder.max_notification_id()
    chooser = random.Random(os.environ.get("PYTEST_SEED", "views"))
    positions = []
    for _ in range(4):
        catch_up_killed(url, pages=chooser.randint(1, 12), page_size=5)
        views = LedgerViews(app)
        positions.append(views.position())
        views.close()
    assert any(0 < position < end for position in positions)
    views = LedgerViews(app)
    assert snapshot(views) == fresh(app, tmp_path)
    assert views.position() == end
    views.close()


async def test_rebuilding_from_scratch_gives_the_same_views(
    engine: WorkflowEngine, url: str
) -> None:
    await run_some(engine, 4)
    with Ledger(url) as ledger:
        views = ledger._read_models()
        before = snapshot(views)
        ledger.rebuild_views()
        assert snapshot(views) == before
        assert views.position() == ledger.application.recorder.max_notification_id()


async def test_views_live_beside_the_ledger_and_only_once_used(
    engine: WorkflowEngine, url: str, tmp_path: Path
) -> None:
    await run_some(engine, 1)
    with Ledger(url) as ledger:
        ledger.get("ex-000")
        assert not (tmp_path / "ledger.views.db").exists()
        assert len(ledger.list()) == 1
    assert (tmp_path / "ledger.views.db").is_file()


def test_where_views_are_kept_for_each_kind_of_store(tmp_path: Path) -> None:
    on_file = views_location(parse_store_url(f"sqlite:///{tmp_path}/x.db"))
    assert on_file == ViewsLocation(str(tmp_path / "x.views.db"), lists_executions=True)
    memory = views_location(parse_store_url("memory://"))
    assert memory.db_name.startswith("file:") and "mode=memory" in memory.db_name
    assert memory.lists_executions
    assert views_location(parse_store_url("memory://")) != memory  # private to each ledger
    postgres = views_location(parse_store_url("postgresql://u:pw@db:5432/ledger"))
    assert "mode=memory" in postgres.db_name
    assert not postgres.lists_executions


async def test_an_in_memory_store_lists_through_private_views() -> None:
    engine = WorkflowEngine(store="memory://")
    async with engine:
        await run_some(engine, 3)
        assert [s.execution_id for s in engine.ledger.list(status="COMPLETED")] == [
            "ex-002",
            "ex-001",
        ]
        assert {m.action for m in engine.ledger.metrics(workflow_id="wf-0")} == {
            "echo",
            "noop",
            "fail",
        }
    engine.ledger.close()
    engine.close()


async def test_scanning_the_ledger_filters_as_the_index_does(
    engine: WorkflowEngine, url: str
) -> None:
    await run_some(engine, 6)
    app = engine.ledger.application
    with Ledger(url) as ledger:
        created = ledger.get("ex-003").created_at
        queries = [
            ExecutionQuery(),
            ExecutionQuery(limit=2),
            ExecutionQuery(status=ExecutionStatus.FAILED),
            ExecutionQuery(workflow_id="wf-1", limit=None),
            ExecutionQuery(since=created),
            ExecutionQuery(until=created, status=ExecutionStatus.COMPLETED),
        ]
        for query in queries:
            assert scan_executions(app, query) == ledger._read_models().states(query)


async def test_listing_refuses_naive_moments_and_lists_a_window(
    engine: WorkflowEngine, url: str
) -> None:
    await run_some(engine, 3)
    with Ledger(url) as ledger:
        middle = ledger.get("ex-001").created_at
        with pytest.raises(ValueError, match="since must be a timezone-aware"):
            ledger.list(since=middle.replace(tzinfo=None))
        with pytest.raises(ValueError, match="until must be a timezone-aware"):
            ledger.list(until=middle.replace(tzinfo=None))
        window = ledger.list(since=middle, until=middle)
        assert [s.execution_id for s in window] == ["ex-001"]


async def test_unreadable_records_are_skipped_with_a_warning(
    engine: WorkflowEngine, url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await run_some(engine, 3)
    secret = "ex-001"
    aggregate = execution_uuid(secret)
    app = engine.ledger.application
    notifications = app.recorder.select_notifications(1, 1000)
    damaged = [n for n in notifications if n.originator_id == aggregate]
    with sqlite3.connect(tmp_path / "ledger.db") as con:
        changed = con.execute(
            "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = 2",
            (b"{not json", aggregate.hex),
        )
        assert changed.rowcount == 1
    con.close()
    with Ledger(url) as ledger, caplog.at_level(logging.WARNING):
        listed = [s.execution_id for s in ledger.list()]
        assert listed == ["ex-002", "ex-000"]
        assert not ledger.verify(secret).ok
        assert f"notification {damaged[1].id}" in caplog.text
        assert "{not json" not in caplog.text
        assert "skipped execution 'ex-001'" in caplog.text


async def test_views_of_another_ledger_are_rebuilt(
    engine: WorkflowEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await run_some(engine, 2)
    views = tmp_path / "ledger.views.db"
    with Ledger(engine.ledger.application.store) as ledger:
        assert len(ledger.list()) == 2
    other = tmp_path / "other"
    other.mkdir()
    replacement = WorkflowEngine(store=f"sqlite:///{other}/ledger.db")
    async with replacement:
        await run_some(replacement, 1, first=7)
    replacement.close()
    (other / "ledger.views.db").write_bytes(views.read_bytes())  # stale views beside it
    with Ledger(f"sqlite:///{other}/ledger.db") as ledger, caplog.at_level(logging.WARNING):
        assert [s.execution_id for s in ledger.list()] == ["ex-007"]
        assert "built from another ledger" in caplog.text


async def test_threads_listing_at_once_see_every_execution_once(
    engine: WorkflowEngine, url: str
) -> None:
    await run_some(engine, 12)
    results: list[list[str]] = []
    with Ledger(url) as ledger:

        def listing() -> None:
            results.append([s.execution_id for s in ledger.list(limit=None)])

        threads = [threading.Thread(target=listing) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 10)
        expected = [f"ex-{n:03d}" for n in reversed(range(12))]
        assert results == [expected] * 4
        assert sum(m.count for m in ledger.metrics(action="echo")) == 12


class Overtaken(LedgerViews):
    """Views that another process overtakes once, just before they record a page."""

    def __init__(self, app: LedgerApplication, rival: LedgerViews) -> None:
        super().__init__(app, page_size=4)
        self.rival: LedgerViews | None = rival

    def _decoded(self, page: Sequence[Notification]) -> list[LoggedEvent]:
        if self.rival is not None:
            self.rival.catch_up()
            self.rival = None
        return super()._decoded(page)


async def test_a_page_recorded_first_by_another_process_is_not_counted_twice(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    await run_some(engine, 3)
    app = engine.ledger.application
    rival = LedgerViews(app, page_size=5)
    overtaken = Overtaken(app, rival)
    overtaken.catch_up()
    assert snapshot(overtaken) == fresh(app, tmp_path)
    overtaken.close()
    rival.close()


def test_views_that_cannot_be_opened_are_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "ledger.views.db").mkdir()
    with (
        Ledger(f"sqlite:///{tmp_path}/ledger.db") as ledger,
        pytest.raises(StoreError, match=r"ledger\.views\.db"),
    ):
        ledger.list()
