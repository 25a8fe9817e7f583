"""The Execution aggregate through a real eventsourcing Application on SQLite."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from eventsourcing.utils import get_topic

from flowledger.domain import events as ev
from flowledger.domain.execution import Execution
from flowledger.domain.history import history_entry
from tests.domain.factories import at, definition, error, sqlite_app, started, step

NASTY = {"_type_": "datetime_iso", "_data_": "not a date"}


def scenario(execution: Execution) -> Iterator[None]:
    """Drive one execution through most events, yielding after each command."""
    commands: list[Callable[[], None]] = [
        lambda: execution.start_step("a", NASTY, at(1)),
        lambda: execution.fail_step("a", error(), True, 1.5, at(2)),
        lambda: execution.schedule_retry("a", at(20), at(3)),
        lambda: execution.start_step("a", {"x": NASTY}, at(20)),
        lambda: execution.complete_step("a", NASTY, 7, at(21)),
        lambda: execution.record_condition("a", "b", "output._type_", True, at(22)),
        lambda: execution.pause("missing", at(23), step_id="b", missing_var="input.k"),
        lambda: execution.provide_input({"k": NASTY}, "alice", at(24)),
        lambda: execution.resume("alice", at(25)),
        lambda: execution.start_step("b", {}, at(26)),
        lambda: execution.interrupt_step("b", at(27)),
        lambda: execution.start_step("b", {}, at(28)),
        lambda: execution.time_out_step("b", 2.5, at(31)),
        lambda: execution.request_cancel("stop", "bob", at(32), rollback=True),
        lambda: execution.start_rollback("cancelled", at(33)),
        lambda: execution.start_compensation("a", at(34)),
        lambda: execution.roll_back_step("a", NASTY, at(35)),
        lambda: execution.finish_rollback(at(36)),
    ]
    for command in commands:
        command()
        yield


def new_execution(execution_id: str = "ex-1") -> Execution:
    return started("a", "b", compensate=("a",), input_data=NASTY, execution_id=execution_id)


def replayed(app: Application, execution: Execution) -> Execution:
    aggregate = None
    for event in app.events.get(execution.id):
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, Execution)
    return aggregate


def test_payloads_with_transcoder_marker_keys_round_trip(tmp_path: Any) -> None:
    app = sqlite_app(tmp_path)
    execution = new_execution()
    for _ in scenario(execution):
        pass
    app.save(execution)
    loaded = app.repository.get(execution.id)
    assert loaded == execution
    state = loaded.state()
    assert state == execution.state()
    assert state.input == {**NASTY, "k": NASTY}
    assert state.steps["a"].output == NASTY
    assert state.steps["a"].compensation_output == NASTY
    history = [history_entry(event) for event in app.events.get(execution.id)]
    assert history[1].data["parameters"] == NASTY
    assert history[0].data["input"] == NASTY


@pytest.mark.parametrize("interval", [1, 3, 7])
def test_snapshots_equal_the_full_replay(tmp_path: Any, interval: int) -> None:
    app = sqlite_app(tmp_path, snapshot_every=interval)
    execution = new_execution()
    app.save(execution)
    for _ in scenario(execution):
        app.save(execution)
        loaded = app.repository.get(execution.id)
        full = replayed(app, execution)
        assert loaded == full == execution
        assert loaded.state() == full.state() == execution.state()
    snapshots = list(app.snapshots.get(execution.id)) if app.snapshots else []
    assert len(snapshots) == execution.version // interval
    latest = snapshots[-1]
    rebuilt = latest.mutate(None)
    for event in app.events.get(execution.id, gt=latest.originator_version):
        rebuilt = event.mutate(rebuilt)
    assert rebuilt == replayed(app, execution)


def test_a_workflow_whose_step_ids_are_the_transcoder_markers_can_be_snapshotted(
    tmp_path: Any,
) -> None:
    app = sqlite_app(tmp_path, snapshot_every=2)
    wf = definition(step("_type_"), step("_data_", after="_type_"))
    execution = Execution.start("odd", wf, NASTY, at(0))
    execution.start_step("_type_", {}, at(1))
    execution.complete_step("_type_", NASTY, 1, at(2))
    app.save(execution)
    loaded = app.repository.get(execution.id)
    assert loaded == execution
    assert list(loaded.state().steps) == ["_type_", "_data_"]


def test_loading_an_earlier_version_gives_the_state_at_that_time(tmp_path: Any) -> None:
    app = sqlite_app(tmp_path)
    execution = new_execution()
    states = {execution.version: execution.state()}
    for _ in scenario(execution):
        states[execution.version] = execution.state()
    app.save(execution)
    for version, state in states.items():
        assert app.repository.get(execution.id, version=version).state() == state


def test_snapshot_state_transcodes_to_an_equal_aggregate() -> None:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    execution = new_execution()
    for _ in scenario(execution):
        execution.collect_events()  # pending events are not state
        snapshot = Snapshot.take(execution)
        state = transcoder.decode(transcoder.encode(snapshot.state))
        rebuilt = Snapshot(
            originator_id=snapshot.originator_id,
            originator_version=snapshot.originator_version,
            timestamp=snapshot.timestamp,
            topic=snapshot.topic,
            state=state,
        ).mutate(None)
        assert rebuilt == execution
        assert_json_safe(vars(rebuilt))


def assert_json_safe(value: Any, path: str = "$") -> None:
    """Only what the transcoder gives back unchanged: no tuples, sets or enums."""
    assert not isinstance(value, tuple | set | frozenset | enum.Enum), path
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, path
            assert_json_safe(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_json_safe(item, f"{path}[{index}]")


def test_aggregate_attributes_are_json_safe() -> None:
    execution = new_execution()
    for _ in scenario(execution):
        assert_json_safe({k: v for k, v in vars(execution).items() if k != "_pending_events"})


def test_event_topics_are_module_and_class_names() -> None:
    event_classes = [
        value
        for value in vars(ev).values()
        if inspect.isclass(value)
        and issubclass(value, ev.ExecutionEvent)
        and value.__module__ == ev.__name__
        and value.__dataclass_fields__.keys() >= {"hash"}
        and not value.__name__.startswith("_")
    ]
    names = {cls.__name__ for cls in event_classes}
    assert {"ExecutionStarted", "StepStarted", "ConditionEvaluated", "RollbackFailed"} <= names
    for cls in event_classes:
        assert get_topic(cls) == f"flowledger.domain.events:{cls.__name__}"
    assert issubclass(ev.ExecutionStarted, ev.ExecutionEvent)


def test_two_executions_save_in_one_transaction(tmp_path: Any) -> None:
    app = sqlite_app(tmp_path)
    first, second = new_execution("one"), new_execution("two")
    first.start_step("a", {}, at(1))
    app.save(first, second)
    assert app.repository.get(first.id).state() == first.state()
    assert app.repository.get(second.id).version == 1
