"""The public Ledger on real stores: state now, at a version, at a moment; history; list."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from flowledger.domain.execution import Execution
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.errors import (
    ExecutionNotFoundError,
    FlowledgerError,
    StoreError,
    VersionNotFoundError,
)
from tests.domain.factories import at, chain_definition, error, hashed

NASTY = {"_type_": "datetime_iso", "_data_": "not a date"}


def run(
    execution_id: str,
    *,
    steps: tuple[str, ...] = ("a", "b"),
    start: float = 0,
    workflow_id: str = "wf",
    end: str = "complete",
) -> Execution:
    """An execution of a sequence of steps, one event a second from ``start``.

    ``end`` is ``complete``, ``fail`` or ``running`` (left running after its steps).
    """
    definition = hashed(replace(chain_definition(*steps), id=workflow_id))
    execution = Execution.start(execution_id, definition, {"n": 1}, at(start))
    clock = start
    for step_id in steps:
        clock += 1
        execution.start_step(step_id, {"step": step_id}, at(clock))
        clock += 1
        execution.complete_step(step_id, {"done": step_id}, 5, at(clock))
    clock += 1
    if end == "complete":
        execution.complete({"result": 42}, at(clock))
    elif end == "fail":
        execution.fail(steps[-1], error(), at(clock))
    return execution


@pytest.fixture(params=["sqlite", "memory"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LedgerApplication, Ledger]]:
    """A writing application and a Ledger reading the same store.

    On SQLite the Ledger opens the file itself; memory:// lives in one application,
    so the Ledger shares it.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.db"
        app = LedgerApplication(url)
        ledger = Ledger(url)
    else:
        app = LedgerApplication("memory://")
        ledger = Ledger(application=app)
    with ledger:
        yield app, ledger
    app.close()


def test_get_returns_the_current_state(stores: tuple[LedgerApplication, Ledger]) -> None:
    app, ledger = stores
    execution = run("ex-1")
    app.save(execution)
    state = ledger.get("ex-1")
    assert state == execution.state()
    assert state.status is ExecutionStatus.COMPLETED
    assert state.outputs == {"a": {"done": "a"}, "b": {"done": "b"}}
    assert state.version == 6


def test_get_at_a_version_is_the_state_right_after_that_event(
    stores: tuple[LedgerApplication, Ledger],
) -> None:
    app, ledger = stores
    execution = run("ex-1", end="running")
    app.save(execution)
    first = Execution.start("ex-1", chain_definition("a", "b"), {"n": 1}, at(0))
    assert ledger.get("ex-1", version=1) == first.state()
    after_two = ledger.get("ex-1", version=2)
    assert after_two.version == 2
    assert after_two.steps["a"].status is StepStatus.RUNNING
    assert ledger.get("ex-1", version=5) == execution.state()


@pytest.mark.parametrize("version", [0, -1, 6, 100])
def test_a_version_outside_the_history_is_refused(
    stores: tuple[LedgerApplication, Ledger], version: int
) -> None:
    app, ledger = stores
    app.save(run("ex-1", end="running"))
    with pytest.raises(VersionNotFoundError) as raised:
        ledger.get("ex-1", version=version)
    assert raised.value.latest == 5
    assert raised.value.requested == version
    assert isinstance(raised.value, FlowledgerError)
    assert str(version) in str(raised.value)


def test_get_at_a_moment(stores: tuple[LedgerApplication, Ledger]) -> None:
    app, ledger = stores
    app.save(run("ex-1"))  # events at 0, 1, 2, 3, 4, 5 seconds
    assert ledger.get("ex-1", at=at(0)).version == 1
    assert ledger.get("ex-1", at=at(2)).version == 3  # an event exactly at the moment counts
    between = ledger.get("ex-1", at=at(2.5))
    assert between.version == 3
    assert between.steps["a"].status is StepStatus.COMPLETED
    assert between.steps["b"].status is StepStatus.PENDING
    assert between == ledger.get("ex-1", version=3)
    assert ledger.get("ex-1", at=at(3600)) == ledger.get("ex-1")


def test_a_moment_in_another_time_zone_is_the_same_moment(
    stores: tuple[LedgerApplication, Ledger],
) -> None:
    app, ledger = stores
    app.save(run("ex-1"))
    moment = at(2).astimezone(timezone(timedelta(hours=-5)))
    assert ledger.get("ex-1", at=moment).version == 3


def test_a_moment_before_the_start_is_refused(stores: tuple[LedgerApplication, Ledger]) -> None:
    app, ledger = stores
    app.save(run("ex-1"))
    with pytest.raises(VersionNotFoundError, match="had not started") as raised:
        ledger.get("ex-1", at=at(-0.001))
    assert raised.value.requested == at(-0.001)
    assert raised.value.latest == 6


def test_a_naive_moment_or_both_version_and_moment_are_refused(
    stores: tuple[LedgerApplication, Ledger],
) -> None:
    app, ledger = stores
    app.save(run("ex-1"))
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.get("ex-1", at=datetime(2024, 5, 1, 12, 0, 3))
    with pytest.raises(ValueError, match="not both"):
        ledger.get("ex-1", version=2, at=at(3))


def test_events_out_of_clock_order_count_up_to_the_last_one_at_or_before_the_moment(
    stores: tuple[LedgerApplication, Ledger],
) -> None:
    app, ledger = stores
    execution = Execution.start("skew", chain_definition("a"), None, at(10))
    execution.start_step("a", {}, at(5))  # the engine's clock stepped back
    execution.complete_step("a", {}, 1, at(20))
    app.save(execution)
    assert ledger.get("skew", at=at(7)).version == 2
    assert ledger.get("skew", at=at(12)).version == 2


def test_unknown_execution(stores: tuple[LedgerApplication, Ledger]) -> None:
    _, ledger = stores
    for read in (
        lambda: ledger.get("nope"),
        lambda: ledger.get("nope", version=1),
        lambda: ledger.get("nope", version=0),
        lambda: ledger.get("nope", at=at(1)),
        lambda: ledger.history("nope"),
        lambda: ledger.export("nope"),
        lambda: ledger.verify("nope"),
    ):
        with pytest.raises(ExecutionNotFoundError) as raised:
            read()
        assert raised.value.execution_id == "nope"


def test_history_lists_every_event_with_decoded_payloads(
    stores: tuple[LedgerApplication, Ledger],
) -> None:
    app, ledger = stores
    execution = Execution.start("ex-1", chain_definition("a"), NASTY, at(0))
    execution.start_step("a", {"x": NASTY}, at(1))
    execution.complete_step("a", NASTY, 2.5, at(2))
    execution.complete([NASTY], at(3))
    app.save(execution)
    history = ledger.history("ex-1")
    assert [entry.type for entry in history] == [
        "ExecutionStarted",
        "StepStarted",
        "StepCompleted",
        "ExecutionCompleted",
    ]
    assert [entry.version for entry in history] == [1, 2, 3, 4]
    assert {entry.execution_id for entry in history} == {"ex-1"}
    assert [entry.timestamp for entry in history] == [at(0), at(1), at(2), at(3)]
    assert history[0].data["input"] == NASTY
    assert history[0].data["workflow_id"] == "wf"
    assert history[1].data["parameters"] == {"x": NASTY}
    assert history[1].step_id == "a"
    assert history[2].data["output"] == NASTY
    assert history[2].data["duration_ms"] == 2.5
    assert history[3].data["outputs"] == [NASTY]
    assert history[3].step_id is None
    assert history[0].prev_hash == "0" * 64
    assert all(h.prev_hash == g.hash for g, h in pairwise(history))
    assert history[-1].hash == execution.chain_head
    assert ledger.get("ex-1").input == NASTY


def test_list_is_newest_first_and_filters(stores: tuple[LedgerApplication, Ledger]) -> None:
    app, ledger = stores
    app.save(run("one", workflow_id="orders"))
    app.save(run("two", workflow_id="refunds", end="fail"))
    app.save(run("three", workflow_id="orders", end="running"), run("four", workflow_id="orders"))
    app.save(run("five", workflow_id="refunds"))

    def ids(states: list[Any]) -> list[str]:
        return [state.execution_id for state in states]

    assert ids(ledger.list()) == ["five", "four", "three", "two", "one"]
    assert ids(ledger.list(workflow_id="orders")) == ["four", "three", "one"]
    assert ids(ledger.list(status=ExecutionStatus.COMPLETED)) == ["five", "four", "one"]
    assert ids(ledger.list(status="failed")) == ["two"]
    assert ids(ledger.list(status="RUNNING", workflow_id="orders")) == ["three"]
    assert ids(ledger.list(status="RUNNING", workflow_id="refunds")) == []
    assert ids(ledger.list(limit=2)) == ["five", "four"]
    assert ids(ledger.list(status="COMPLETED", limit=2)) == ["five", "four"]
    assert ids(ledger.list(limit=None)) == ["five", "four", "three", "two", "one"]
    assert ledger.list(limit=0) == []
    assert ledger.list(workflow_id="unknown") == []
    assert ledger.list()[0] == ledger.get("five")


def test_list_refuses_bad_arguments(stores: tuple[LedgerApplication, Ledger]) -> None:
    _, ledger = stores
    with pytest.raises(ValueError, match="one of PENDING, RUNNING"):
        ledger.list(status="DONE")
    with pytest.raises(ValueError, match="limit"):
        ledger.list(limit=-1)


def test_an_empty_store_lists_nothing_and_verifies(
    stores: tuple[LedgerApplication, Ledger],
) -> None:
    _, ledger = stores
    assert ledger.list() == []
    report = ledger.verify()
    assert report.ok
    assert report.checked == 0


def test_ledger_opens_its_own_store_and_closes_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/own.db"
    with LedgerApplication(url) as app:
        app.save(run("ex-1"))
    with Ledger(url, snapshot_interval=0) as ledger:
        assert ledger.get("ex-1").status is ExecutionStatus.COMPLETED
        assert ledger.application.snapshots is None


def test_a_shared_application_is_not_closed_by_the_ledger() -> None:
    app = LedgerApplication("memory://")
    app.save(run("ex-1"))
    with Ledger(application=app) as ledger:
        assert ledger.application is app
    assert app.load("ex-1").version == 6  # still open


def test_the_default_store_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWLEDGER_STORE", "memory://")
    with Ledger() as ledger:
        assert ledger.application.store.kind == "memory"


def test_ledger_refuses_a_store_and_an_application_together() -> None:
    app = LedgerApplication("memory://")
    with pytest.raises(ValueError, match="not both"):
        Ledger("memory://", application=app)


def test_ledger_with_a_bad_url_raises_a_flowledger_error() -> None:
    with pytest.raises(StoreError, match="Accepted forms"):
        Ledger("nosuch://x")
