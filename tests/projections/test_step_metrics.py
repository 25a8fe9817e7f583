"""Step metrics, from executions real engines ran and from recorded durations."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from flowledger import WorkflowEngine, load_definition
from flowledger.domain.events import ExecutionStarted
from flowledger.domain.execution import Execution
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.projections import step_metrics
from flowledger.projections.step_metrics import StepMetrics, StepMetricsProjection
from flowledger.projections.view_store import LoggedEvent, ViewStore
from tests.domain.factories import at
from tests.unit.conftest import FAST_RETRY, WAIT, graph, node, step, workflow


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(share * len(ordered)) - 1]


async def test_counts_retries_timeouts_and_durations_of_real_runs(
    engine: WorkflowEngine, url: str
) -> None:
    flaky = step("flaky", "fail", parameters={"message": "x", "retryable": True}, retry=FAST_RETRY)
    slow_retry = {"max_attempts": 2, "initial_interval": 0.01, "jitter": 0}
    slow = step("slow", "sleep", parameters={"seconds": 5}, timeout=0.05, retry=slow_retry)
    for n in range(3):
        await engine.run_workflow(workflow(step("a"), step("b", "noop")), {"n": n}, timeout=WAIT)
    await engine.run_workflow(workflow(flaky, workflow_id="flaky"), timeout=WAIT)
    await engine.run_workflow(workflow(slow, workflow_id="slow"), timeout=WAIT)
    trigger = {"id": "t", "type": "trigger"}
    await engine.run_workflow(
        graph([trigger, node("e")], [{"source": "t", "target": "e"}], workflow_id="graph"),
        timeout=WAIT,
    )

    with Ledger(url) as ledger:
        metrics = {(m.workflow_id, m.action): m for m in ledger.metrics()}
        assert sorted(metrics) == [
            ("flaky", "fail"),
            ("graph", "echo"),  # the trigger runs no action
            ("slow", "sleep"),
            ("wf", "echo"),
            ("wf", "noop"),
        ]
        echo = metrics["wf", "echo"]
        durations = [
            entry.data["duration_ms"]
            for state in ledger.list(workflow_id="wf")
            for entry in ledger.history(state.execution_id)
            if entry.type == "StepCompleted" and entry.step_id == "a"
        ]
        assert (echo.count, echo.completed, echo.failed, echo.retries, echo.timeouts) == (
            3,
            3,
            0,
            0,
            0,
        )
        assert echo.p50_ms == nearest_rank(durations, 0.5)
        assert echo.p95_ms == nearest_rank(durations, 0.95)
        assert echo.max_ms == max(durations)
        assert echo.failure_rate == 0.0

        fail = metrics["flaky", "fail"]
        assert (fail.count, fail.completed, fail.failed, fail.retries, fail.timeouts) == (
            3,
            0,
            3,
            2,
            0,
        )
        assert fail.failure_rate == 1.0
        sleep = metrics["slow", "sleep"]
        assert (sleep.count, sleep.failed, sleep.retries, sleep.timeouts) == (2, 2, 1, 2)
        assert (sleep.p50_ms, sleep.max_ms) == (None, None)  # a timeout has no duration

        assert ledger.metrics(workflow_id="wf", action="noop") == [metrics["wf", "noop"]]
        assert [m.action for m in ledger.metrics(workflow_id="wf")] == ["echo", "noop"]
        assert [m.workflow_id for m in ledger.metrics(action="echo")] == ["graph", "wf"]
        assert ledger.metrics(workflow_id="nobody") == []


def test_percentiles_are_nearest_rank_over_recorded_durations(tmp_path: Path) -> None:
    definition = load_definition({"id": "pay", "steps": [{"id": "charge", "action": "card"}]})
    app = LedgerApplication(f"sqlite:///{tmp_path}/ledger.db")
    executions = []
    for n, duration in enumerate([7.0, *range(20, 0, -1)]):
        execution = Execution.start(f"ex-{n}", definition, {}, at(n))
        execution.start_step("charge", {}, at(n + 0.1))
        if n == 0:
            failure = {"type": "E", "message": "m", "retryable": True}
            execution.fail_step("charge", failure, True, duration, at(n + 0.2))
        else:
            execution.complete_step("charge", {}, duration, at(n + 0.2))
        executions.append(execution)
    app.save(*executions)
    with Ledger(application=app) as ledger:
        (metrics,) = ledger.metrics()
    app.close()
    # 21 durations: 1..20 and 7 (the failed attempt's).
    assert (metrics.count, metrics.completed, metrics.failed) == (21, 20, 1)
    assert (metrics.p50_ms, metrics.p95_ms, metrics.max_ms) == (10.0, 19.0, 20.0)
    assert metrics.failure_rate == pytest.approx(1 / 21)
    assert metrics.to_dict() == {
        "workflow_id": "pay",
        "action": "card",
        "count": 21,
        "completed": 20,
        "failed": 1,
        "retries": 0,
        "timeouts": 0,
        "p50_ms": 10.0,
        "p95_ms": 19.0,
        "max_ms": 20.0,
        "failure_rate": pytest.approx(1 / 21),
    }


def test_no_finished_attempt_is_no_failure() -> None:
    metrics = StepMetrics("wf", "a", 1, 0, 0, 0, 0, None, None, None)
    assert metrics.failure_rate == 0.0


def started_and_step_events(app: LedgerApplication) -> list[LoggedEvent]:
    definition = load_definition({"id": "wf", "steps": [{"id": "s", "action": "work"}]})
    execution = Execution.start("ex", definition, {}, at(0))
    execution.start_step("s", {}, at(1))
    execution.complete_step("s", {}, 4.0, at(2))
    app.save(execution)
    page = app.recorder.select_notifications(1, 10)
    return [LoggedEvent(n.id, app.decode(n)) for n in page]


def metrics_of(store: ViewStore, projection: StepMetricsProjection) -> list[StepMetrics]:
    with store.datastore.transaction(commit=False) as cursor:
        return projection.select(cursor)


def test_later_pages_find_what_an_execution_runs_in_the_views(tmp_path: Path) -> None:
    app = LedgerApplication("memory://")
    events = started_and_step_events(app)
    first = StepMetricsProjection()
    store = ViewStore(str(tmp_path / "views.db"), [first])
    with store.datastore.transaction(commit=True) as cursor:
        first.apply(cursor, events[:1])
    # A new projection (a restarted process) remembers nothing: it reads the views.
    later = StepMetricsProjection()
    with store.datastore.transaction(commit=True) as cursor:
        later.apply(cursor, events[1:])
    (metrics,) = metrics_of(store, later)
    assert (metrics.workflow_id, metrics.action, metrics.count, metrics.max_ms) == (
        "wf",
        "work",
        1,
        4.0,
    )
    store.close()


def test_steps_of_an_unseen_or_unreadable_start_are_not_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = LedgerApplication("memory://")
    events = started_and_step_events(app)
    start = events[0].event
    assert isinstance(start, ExecutionStarted)
    damaged = replace(start, definition="[not a definition", definition_hash="other")
    projection = StepMetricsProjection()
    store = ViewStore(str(tmp_path / "views.db"), [projection])
    monkeypatch.setattr(step_metrics, "_REMEMBERED_EXECUTIONS", 1)
    with caplog.at_level(logging.WARNING), store.datastore.transaction(commit=True) as cursor:
        projection.apply(cursor, events[1:])  # its start was never seen
        projection.apply(cursor, [LoggedEvent(1, damaged), *events[1:]])
    assert metrics_of(store, projection) == []
    assert "notification 1" in caplog.text
    assert "not a definition" not in caplog.text
    store.close()


def test_the_definition_of_each_start_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_metrics, "_REMEMBERED_EXECUTIONS", 2)  # forgets as it goes
    app = LedgerApplication("memory://")
    definition = load_definition({"id": "wf", "steps": [{"id": "s", "action": "work"}]})
    executions = [
        Execution.start(f"ex-{n}", definition, {}, at(0) + timedelta(seconds=n)) for n in range(3)
    ]
    app.save(*executions)
    page = app.recorder.select_notifications(1, 10)
    events = [LoggedEvent(n.id, app.decode(n)) for n in page]
    projection = StepMetricsProjection()
    store = ViewStore(str(tmp_path / "views.db"), [projection])
    with store.datastore.transaction(commit=True) as cursor:
        projection.apply(cursor, events)
        cursor.execute("SELECT COUNT(*) FROM step_metric_definitions")
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT COUNT(*) FROM step_metric_executions")
        assert cursor.fetchone()[0] == 3
    store.close()
