"""The execution index, fed by executions real engines ran on a SQLite file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flowledger import ExecutionStatus, WorkflowEngine
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.projections.execution_index import (
    ExecutionIndexProjection,
    ExecutionQuery,
    IndexedExecution,
    from_micros,
    to_micros,
)
from flowledger.projections.view_store import VIEWS_SCHEMA_VERSION, LoggedEvent, ViewStore
from tests.projections.recorded import record_every_status
from tests.unit.conftest import WAIT, step, workflow


def logged(app: LedgerApplication) -> list[LoggedEvent]:
    """Every event of the ledger, decoded, with its notification id."""
    page = app.recorder.select_notifications(1, 100_000)
    return [LoggedEvent(n.id, app.decode(n)) for n in page]


def index_store(path: Path) -> tuple[ViewStore, ExecutionIndexProjection]:
    projection = ExecutionIndexProjection()
    return ViewStore(str(path), [projection]), projection


def select(store: ViewStore, projection: ExecutionIndexProjection, **query: object) -> list[str]:
    with store.datastore.transaction(commit=False) as cursor:
        rows = projection.select(cursor, ExecutionQuery(**query))  # type: ignore[arg-type]
    return [row.execution_id for row in rows]


async def test_the_index_agrees_with_the_ledger_in_every_status(
    engine: WorkflowEngine, url: str
) -> None:
    ids = await record_every_status(engine)
    assert set(ids) == set(ExecutionStatus) - {ExecutionStatus.PENDING}
    with Ledger(url) as ledger:
        listed = ledger.list(limit=None)
        rows = {row.execution_id: row for row in ledger._read_models().executions(ExecutionQuery())}
        for status, execution_id in ids.items():
            state = ledger.get(execution_id)
            row = rows[execution_id]
            assert row.status is state.status is status
            assert (row.workflow_id, row.version) == (state.workflow_id, state.version)
            assert row.created_at == state.created_at
            assert row.updated_at == state.updated_at
            assert ledger.list(status=status, limit=None) == [state]
        assert len(listed) == len(ids) == len(rows)


async def test_rows_are_newest_first_and_filters_combine(
    engine: WorkflowEngine, tmp_path: Path
) -> None:
    for n in range(6):
        definition = workflow(step("a"), workflow_id="even" if n % 2 == 0 else "odd")
        await engine.run_workflow(definition, execution_id=f"ex-{n}", timeout=WAIT)
    store, projection = index_store(tmp_path / "index.db")
    events = logged(engine.ledger.application)
    with store.datastore.transaction(commit=True) as cursor:
        projection.apply(cursor, events)

    assert select(store, projection) == [f"ex-{n}" for n in reversed(range(6))]
    assert select(store, projection, workflow_id="even") == ["ex-4", "ex-2", "ex-0"]
    assert select(store, projection, workflow_id="odd", limit=2) == ["ex-5", "ex-3"]
    assert select(store, projection, status=ExecutionStatus.COMPLETED, limit=1) == ["ex-5"]
    assert select(store, projection, status=ExecutionStatus.FAILED) == []
    with store.datastore.transaction(commit=False) as cursor:
        rows = projection.select(cursor, ExecutionQuery())
    assert select(store, projection, before=rows[2].position) == ["ex-2", "ex-1", "ex-0"]
    third = rows[3].created_at
    assert select(store, projection, since=third) == ["ex-5", "ex-4", "ex-3", "ex-2"]
    assert select(store, projection, until=third) == ["ex-2", "ex-1", "ex-0"]
    assert select(store, projection, since=third, until=third) == ["ex-2"]
    assert select(store, projection, since=third + timedelta(days=1)) == []
    store.close()


async def test_applying_a_page_twice_changes_no_row(engine: WorkflowEngine, tmp_path: Path) -> None:
    await engine.run_workflow(workflow(step("a"), step("b")), execution_id="one", timeout=WAIT)
    store, projection = index_store(tmp_path / "index.db")
    events = logged(engine.ledger.application)
    for _ in range(2):
        with store.datastore.transaction(commit=True) as cursor:
            projection.apply(cursor, events[:1])
            projection.apply(cursor, events)
    with store.datastore.transaction(commit=False) as cursor:
        (row,) = projection.select(cursor, ExecutionQuery())
    state = engine.ledger.get("one")
    assert isinstance(row, IndexedExecution)
    assert (row.status, row.version, row.updated_at) == (
        state.status,
        state.version,
        state.updated_at,
    )
    store.close()


def test_a_views_database_of_another_schema_version_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    store, _ = index_store(path)
    with store.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            "INSERT INTO execution_index VALUES (1, 'agg', 'old', 'wf', 'RUNNING', 0, 0, 1)"
        )
        cursor.execute(f"PRAGMA user_version = {VIEWS_SCHEMA_VERSION + 1}")
    store.close()
    reopened, projection = index_store(path)
    assert select(reopened, projection) == []
    assert reopened.position("LedgerApplication") == 0
    reopened.close()


def test_moments_convert_to_microseconds_and_back() -> None:
    moment = from_micros(1_700_000_000_123_456)
    assert to_micros(moment) == 1_700_000_000_123_456
    assert to_micros(moment.replace(tzinfo=None)) == 1_700_000_000_123_456
