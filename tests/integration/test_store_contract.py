"""The store contract: every store-facing behaviour, run on every store.

:class:`StoreContract` holds the tests and is not collected itself; each subclass names
a store and how to edit one of its stored rows. Engines and ledgers on a URL store get
applications of their own (as separate processes would); ``memory://`` shares one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from flowledger import ExecutionNotFoundError, ExecutionStatus, Ledger, WorkflowEngine
from flowledger.domain.execution import execution_uuid
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.stores import parse_store_url
from flowledger.errors import StoreError, VersionNotFoundError
from tests.postgres import connect, schema_exists, with_options

WAIT = 60.0
"""Seconds a wait may take before the test fails instead of hanging (CPU is shared)."""

SNAPSHOT_INTERVAL = 10
"""Every application of the contract snapshots executions this often."""

Edit = Callable[[bytes], bytes]


def chain(*step_ids: str, action: str = "echo", workflow_id: str = "greet") -> dict[str, Any]:
    """A workflow whose steps run one after the other, each echoing the input's ``who``."""
    steps = [
        {"id": step_id, "action": action, "parameters": {"name": "${input.who}"}}
        for step_id in step_ids
    ]
    return {"id": workflow_id, "steps": steps}


FAILING = {
    "id": "failing",
    "steps": [
        {"id": "ok", "action": "echo", "parameters": {"n": 1}},
        {"id": "boom", "action": "fail", "retry": {"max_attempts": 2, "initial_interval": 0}},
    ],
}
"""Fails: ``boom`` fails twice (one retry), after ``ok`` completed."""


class OpenStore:
    """Engines and ledgers on one store, all closed when the test ends."""

    def __init__(self, url: str, *, shared: bool) -> None:
        self.url = url
        self._shared = (
            LedgerApplication(url, snapshot_interval=SNAPSHOT_INTERVAL) if shared else None
        )
        self._engines: list[WorkflowEngine] = []
        self._ledgers: list[Ledger] = []

    def engine(self) -> WorkflowEngine:
        engine = (
            WorkflowEngine(application=self._shared)
            if self._shared
            else WorkflowEngine(self.url, snapshot_interval=SNAPSHOT_INTERVAL)
        )
        self._engines.append(engine)
        return engine

    def ledger(self) -> Ledger:
        ledger = (
            Ledger(application=self._shared)
            if self._shared
            else Ledger(self.url, snapshot_interval=SNAPSHOT_INTERVAL)
        )
        self._ledgers.append(ledger)
        return ledger

    async def close(self) -> None:
        for engine in self._engines:
            await engine.stop()
            engine.close()
        for ledger in self._ledgers:
            ledger.close()
        if self._shared is not None:
            self._shared.close()


async def run(engine: WorkflowEngine, definition: Any, data: Any = None, **options: Any) -> str:
    """Run an execution to its end (or a pause) and return its id."""
    data = {"who": "someone"} if data is None else data
    state = await engine.run_workflow(definition, data, timeout=WAIT, **options)
    return state.execution_id


async def step_running(engine: WorkflowEngine, execution_id: str, step_id: str) -> None:
    """Return once ``step_id`` of ``execution_id`` is recorded as running."""

    async def watch() -> None:
        async for note in engine.subscribe(execution_id):
            if note.status == "STEP_RUNNING" and note.step_id == step_id:
                return

    await asyncio.wait_for(watch(), WAIT)


class StoreContract:
    """What every store does for the engine and the ledger. Subclasses name the store."""

    shared_application = False
    """True for a store only reachable through one application (``memory://``)."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    def edit_row(self, url: str, execution_id: str, version: int, edit: Edit) -> None:
        """Replace a stored event row's state with ``edit(state)``, in the store itself."""
        raise NotImplementedError

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[OpenStore]:
        opened = OpenStore(store_url, shared=self.shared_application)
        yield opened
        await opened.close()

    async def test_a_run_reads_back_through_a_ledger(self, store: OpenStore) -> None:
        engine = store.engine()
        done = await engine.run_workflow(chain("a", "b"), {"who": "alpha"}, timeout=WAIT)
        ledger = store.ledger()
        state = ledger.get(done.execution_id)
        assert state == done
        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs == {"a": {"name": "alpha"}, "b": {"name": "alpha"}}
        history = ledger.history(done.execution_id)
        assert [entry.version for entry in history] == list(range(1, state.version + 1))
        assert (history[0].type, history[-1].type) == ("ExecutionStarted", "ExecutionCompleted")
        assert [e.prev_hash for e in history[1:]] == [e.hash for e in history[:-1]]
        assert ledger.get(done.execution_id, version=1).outputs == {}
        assert ledger.get(done.execution_id, version=state.version) == state
        with pytest.raises(VersionNotFoundError):
            ledger.get(done.execution_id, version=state.version + 1)
        middle = history[len(history) // 2]
        as_of = max(e.version for e in history if e.timestamp <= middle.timestamp)
        assert ledger.get(done.execution_id, at=middle.timestamp).version == as_of
        assert ledger.get(done.execution_id, at=history[-1].timestamp) == state
        report = ledger.verify(done.execution_id)
        assert (report.ok, report.checked) == (True, state.version)
        exported = json.loads(json.dumps(ledger.export(done.execution_id)))
        assert (exported["execution_id"], exported["chain_head"]) == (
            done.execution_id,
            history[-1].hash,
        )
        assert len(exported["events"]) == state.version

    async def test_list_filters_by_status_and_workflow_most_recent_first(
        self, store: OpenStore
    ) -> None:
        engine = store.engine()
        first = await run(engine, chain("a", workflow_id="wf-a"))
        second = await run(engine, chain("a", workflow_id="wf-a"))
        failed = await run(engine, FAILING)
        ledger = store.ledger()
        assert [s.execution_id for s in ledger.list()] == [failed, second, first]
        assert [s.execution_id for s in ledger.list(status="FAILED")] == [failed]
        assert [s.execution_id for s in ledger.list(workflow_id="wf-a")] == [second, first]
        assert [s.execution_id for s in ledger.list(limit=2)] == [failed, second]
        assert ledger.list(status=ExecutionStatus.FAILED, workflow_id="wf-a") == []
        assert [s.execution_id for s in ledger.list(status="completed")] == [second, first]

    async def test_starting_an_existing_execution_id_runs_nothing_twice(
        self, store: OpenStore
    ) -> None:
        calls: list[str] = []
        first, other = store.engine(), store.engine()
        for engine in (first, other):

            @engine.action("count")
            def count(name: str) -> dict[str, str]:
                calls.append(name)
                return {"name": name}

        definition = chain("a", action="count")
        ids = [
            await run(first, definition, {"who": "x"}, execution_id="order-1"),
            await run(first, definition, {"who": "y"}, execution_id="order-1"),
            await run(other, definition, {"who": "z"}, execution_id="order-1"),
        ]
        assert ids == ["order-1"] * 3
        assert calls == ["x"]
        assert [e.type for e in store.ledger().history("order-1")].count("ExecutionStarted") == 1

    async def test_two_engines_see_each_others_executions(self, store: OpenStore) -> None:
        left, right = store.engine(), store.engine()
        mine = await run(left, chain("a"), {"who": "left"})
        theirs = await run(right, chain("a"), {"who": "right"})
        assert (await left.get_workflow_status(theirs)).outputs == {"a": {"name": "right"}}
        assert (await right.get_workflow_status(mine)).outputs == {"a": {"name": "left"}}
        assert {s.execution_id for s in store.ledger().list()} == {mine, theirs}
        assert store.ledger().verify().executions == 2

    async def test_a_new_engine_reruns_a_step_left_running(self, store: OpenStore) -> None:
        calls: list[str] = []
        first = store.engine()

        @first.action("hold")
        async def hold_forever(name: str) -> dict[str, str]:
            calls.append(f"first {name}")
            await asyncio.Event().wait()
            raise AssertionError("never released")

        definition = chain("a")
        definition["steps"].append({"id": "held", "action": "hold", "parameters": {"name": "w"}})
        execution_id = await first.start_workflow(definition, {"who": "w"})
        await step_running(first, execution_id, "held")
        await first.stop()

        second = store.engine()

        @second.action("hold")
        def hold(name: str) -> dict[str, str]:
            calls.append(f"second {name}")
            return {"held": name}

        async with second:
            state = await second.wait_for(execution_id, timeout=WAIT)
        assert state.status is ExecutionStatus.COMPLETED
        assert calls == ["first w", "second w"]
        types = [(e.type, e.step_id) for e in store.ledger().history(execution_id)]
        assert ("StepInterrupted", "held") in types
        assert types.count(("StepCompleted", "a")) == 1

    async def test_a_long_execution_loads_from_snapshots_as_replay_builds_it(
        self, store: OpenStore
    ) -> None:
        steps = [f"s{n:02}" for n in range(20)]
        execution_id = await run(store.engine(), chain(*steps), {"who": "long"})
        ledger = store.ledger()
        app = ledger.application
        assert app.snapshots is not None
        snapshots = app.snapshots.recorder.select_events(execution_uuid(execution_id))
        assert snapshots, "a 40-event execution has snapshots"
        events = app.read_events(execution_id)
        assert len(events) > 3 * SNAPSHOT_INTERVAL
        for version in (None, len(events) - 1, 2 * SNAPSHOT_INTERVAL + 1, 1):
            replayed = app.rebuild(execution_id, events[:version]).state()
            assert ledger.get(execution_id, version=version) == replayed

    async def test_an_edited_event_row_fails_verification(
        self, store: OpenStore, store_url: str
    ) -> None:
        engine = store.engine()
        edited = await run(engine, chain("a"), {"who": "alpha"})
        untouched = await run(engine, chain("a"), {"who": "alpha"})
        ledger = store.ledger()
        completed = next(e for e in ledger.history(edited) if e.type == "StepCompleted")

        def forge(state: bytes) -> bytes:
            assert b"alpha" in state
            return state.replace(b"alpha", b"omega")

        self.edit_row(store_url, edited, completed.version, forge)
        problems = store.ledger().verify().problems
        assert [(p.execution_id, p.version) for p in problems] == [(edited, completed.version)]
        assert store.ledger().verify(untouched).ok

    async def test_an_unknown_execution_is_not_found(self, store: OpenStore) -> None:
        ledger = store.ledger()
        for read in (ledger.get, ledger.history, ledger.export, ledger.verify):
            with pytest.raises(ExecutionNotFoundError):
                read("no-such-execution")
        with pytest.raises(ExecutionNotFoundError):
            await store.engine().get_workflow_status("no-such-execution")

    async def test_an_exported_bundle_imports_and_verifies(self, store: OpenStore) -> None:
        source = WorkflowEngine("memory://")
        async with source:
            execution_id = await run(source, chain("a", "b"), {"who": "far"})
        bundle = json.loads(json.dumps(source.ledger.export(execution_id)))
        expected = (source.ledger.get(execution_id), source.ledger.history(execution_id))
        source.close()
        assert store.ledger().import_bundle(bundle) == execution_id
        ledger = store.ledger()
        assert (ledger.get(execution_id), ledger.history(execution_id)) == expected
        assert ledger.verify(execution_id).ok
        assert ledger.import_bundle(bundle) == execution_id
        assert len(ledger.history(execution_id)) == len(bundle["events"])
        assert json.loads(json.dumps(ledger.export(execution_id))) == bundle

    async def test_metrics_count_attempts_per_action(self, store: OpenStore) -> None:
        engine = store.engine()
        await run(engine, FAILING)
        await run(engine, chain("a", "b", workflow_id="failing"))
        metrics = {m.action: m for m in store.ledger().metrics(workflow_id="failing")}
        counts = {a: (m.count, m.completed, m.failed, m.retries) for a, m in metrics.items()}
        assert counts == {"echo": (3, 3, 0, 0), "fail": (2, 0, 2, 1)}


class TestMemoryStore(StoreContract):
    """The in-process store: one application, shared by every engine and ledger."""

    shared_application = True

    @pytest.fixture
    def store_url(self) -> str:
        return "memory://"

    def edit_row(self, url: str, execution_id: str, version: int, edit: Edit) -> None:
        pytest.skip("memory:// holds events in the process: there is no stored row to edit")


class TestSQLiteStore(StoreContract):
    """A SQLite file in the test's own directory."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/ledger.db"

    def edit_row(self, url: str, execution_id: str, version: int, edit: Edit) -> None:
        key = (execution_uuid(execution_id).hex, version)
        where = "WHERE originator_id = ? AND originator_version = ?"
        path = parse_store_url(url).env["SQLITE_DBNAME"]
        with closing(sqlite3.connect(path)) as db, db:
            (state,) = db.execute(f"SELECT state FROM stored_events {where}", key).fetchone()
            db.execute(f"UPDATE stored_events SET state = ? {where}", (edit(state), *key))


class TestPostgreSQLStore(StoreContract):
    """A PostgreSQL schema of the test's own, on the server of FLOWLEDGER_TEST_POSTGRES."""

    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url

    def edit_row(self, url: str, execution_id: str, version: int, edit: Edit) -> None:
        from psycopg import sql  # the driver is an optional extra

        table = sql.Identifier(
            parse_store_url(url).env["POSTGRES_SCHEMA"], f"{LedgerApplication.name.lower()}_events"
        )
        where = sql.SQL("WHERE originator_id = %s AND originator_version = %s")
        key = (execution_uuid(execution_id), version)
        with closing(connect(url)) as db, db.transaction():
            query = sql.SQL("SELECT state FROM {} {}").format(table, where)
            row = db.execute(query, key).fetchone()
            assert row is not None, f"no row for version {version} of {execution_id}"
            update = sql.SQL("UPDATE {} SET state = %s {}").format(table, where)
            db.execute(update, (edit(bytes(row[0])), *key))

    def test_the_schema_is_created_on_first_use(self, postgres_url: str) -> None:
        schema = parse_store_url(postgres_url).env["POSTGRES_SCHEMA"]
        assert not schema_exists(postgres_url, schema)
        LedgerApplication(postgres_url).close()
        assert schema_exists(postgres_url, schema)
        LedgerApplication(postgres_url).close()  # a second opening finds it

    def test_url_options_reach_the_connection_pool(self, postgres_url: str) -> None:
        options = {"pool_size": 2, "max_overflow": 1, "max_waiting": 4, "conn_max_age": 120}
        url = with_options(postgres_url, connect_timeout=7, lock_timeout=3, **options)
        url = with_options(url, idle_in_transaction_session_timeout=4)
        with LedgerApplication(url) as app:
            datastore = app.recorder.datastore  # type: ignore[attr-defined]
            pool = datastore.pool
            assert (pool.min_size, pool.max_size, pool.max_waiting) == (2, 3, 4)
            assert (pool.max_lifetime, pool.timeout, datastore.lock_timeout) == (120, 7, 3)
            with datastore.get_connection() as connection:
                shown = connection.execute("SHOW idle_in_transaction_session_timeout")
                assert shown.fetchone() == {"idle_in_transaction_session_timeout": "4s"}

    def test_a_refused_connection_is_one_line_naming_the_server(self, postgres_url: str) -> None:
        env = parse_store_url(postgres_url).env
        where = f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
        url = f"postgresql://no_such_role_x:s3cret-pw@{where}/{env['POSTGRES_DBNAME']}"
        assert "no_such_role_x" in refusal(url, f"cannot connect to PostgreSQL at {where}")


def refusal(url: str, expected: str) -> str:
    """The message opening ``url`` fails with: one line, with ``expected``, no password."""
    with pytest.raises(StoreError) as raised:
        LedgerApplication(url)
    message = str(raised.value)
    assert expected in message
    assert "s3cret-pw" not in message
    assert "\n" not in message
    return message


def test_an_unreachable_server_is_one_line_naming_host_and_port() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago refuses
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://flow:s3cret-pw@127.0.0.1:{port}/ledger?connect_timeout=2"
    refusal(url, f"cannot connect to PostgreSQL at 127.0.0.1:{port}")
