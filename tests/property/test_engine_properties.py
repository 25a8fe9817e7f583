"""Properties of recorded histories, over random workflows run by the real engine.

Each example runs a generated workflow (both definition formats, random action
behaviour per attempt, random cancel/pause/resume commands) on a ``WorkflowEngine``
recording to a SQLite file in a temporary directory of its own: these properties are
about what is stored in the file (DESIGN.md invariants 1 and 6), so the file is read
back by a fresh ``Ledger``, and edited directly to tamper with it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

from hypothesis import given
from hypothesis import strategies as st

from flowledger import ExecutionState, Ledger, load_definition
from flowledger.domain import snapshot as snapshots
from flowledger.domain.execution import execution_uuid
from tests.property.engine_runs import EXECUTION_ID, running
from tests.property.workflows import (
    TRIGGER,
    Command,
    WorkflowRun,
    command_schedules,
    workflow_runs,
)


async def _run_to_file(
    run: WorkflowRun, url: str, commands: tuple[Command, ...], snapshot_interval: int = 100
) -> tuple[ExecutionState, ExecutionState | None]:
    """Run on the file; return the engine's final state and its first rest."""
    async with running(run, url, commands, snapshot_interval=snapshot_interval) as result:
        return await result.state(), result.first_rest


@given(workflow_runs())
def test_every_generated_definition_loads(run: WorkflowRun) -> None:
    """Every generated definition loads, with the generated steps and edges."""
    definition = load_definition(run.definition)
    trigger = {TRIGGER} if run.shape.trigger else set()
    assert set(definition.step_ids) == {step.id for step in run.shape.steps} | trigger
    for step in run.shape.steps:
        loaded = definition.step(step.id)
        assert [edge.source for edge in loaded.depends_on] == [e.source for e in step.edges]
        assert (loaded.compensate is not None) == step.compensate


@contextmanager
def _snapshots_read_first() -> Iterator[None]:
    """Read through snapshots even for short histories, in a process that never saw
    the definition (as after a restart): loading must find it from the history.

    The ledger replays histories of up to ``SHORT_EXECUTION`` events without looking for
    a snapshot, and generated histories are that short.
    """
    saved = dict(snapshots._DEFINITIONS)
    snapshots._DEFINITIONS.clear()
    try:
        with patch("flowledger.engine.ledger_app.SHORT_EXECUTION", 0):
            yield
    finally:
        snapshots._DEFINITIONS.clear()
        snapshots._DEFINITIONS.update(saved)


@given(workflow_runs(), command_schedules(), st.sampled_from([100, 2, 3]))
def test_replay_rebuilds_the_state_the_engine_reached(
    run: WorkflowRun, commands: tuple[Command, ...], snapshot_interval: int
) -> None:
    """Invariant 1: "replaying an execution's events always rebuilds the same state,
    and a state that was saved is the state that is loaded".

    A fresh ``Ledger`` on the file rebuilds the engine's final state from the events
    alone, and from the snapshots the engine took; the runner's own state, when the
    first rest it reported was the end, is that state too; and the state right after
    every event replays without error, to the same value from events and snapshots.
    """
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/ledger.db"
        final, first_rest = asyncio.run(_run_to_file(run, url, commands, snapshot_interval))
        if first_rest is not None and first_rest.status.is_terminal:
            assert first_rest == final
        with Ledger(url, snapshot_interval=0) as events_only:
            assert events_only.get(EXECUTION_ID) == final
            states = [events_only.get(EXECUTION_ID, version=v) for v in range(1, final.version + 1)]
        assert [state.version for state in states] == list(range(1, final.version + 1))
        assert states[-1] == final
        with _snapshots_read_first(), Ledger(url) as ledger:
            assert ledger.get(EXECUTION_ID) == final
            for state in states:
                assert ledger.get(EXECUTION_ID, version=state.version) == state


# -- tampering ------------------------------------------------------------------------

Row = tuple[str, bytes]
"""A stored event's topic and state bytes."""


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every scalar in a JSON value, looking inside strings that hold JSON."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, (*path, i))]
    if isinstance(value, str) and value.startswith(("{", "[")):
        try:
            inner = json.loads(value)
        except json.JSONDecodeError:
            return [path]
        return [(*path, "<json>", *leaf) for leaf in _leaves(inner)] or [path]
    return [path]


def _changed(value: Any) -> Any:
    """A different scalar of the same kind (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "~"
    return 0


def _edit(value: Any, path: tuple[Any, ...]) -> Any:
    """Return ``value`` with the scalar at ``path`` changed."""
    if not path:
        return _changed(value)
    head, *rest = path
    if head == "<json>":
        return json.dumps(_edit(json.loads(value), tuple(rest)))
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _edit(value[head], tuple(rest))
    return copy


def _rows(path: Path) -> dict[int, Row]:
    key = execution_uuid(EXECUTION_ID).hex
    with closing(sqlite3.connect(path)) as db:
        query = "SELECT originator_version, topic, state FROM stored_events WHERE originator_id=?"
        return {version: (topic, state) for version, topic, state in db.execute(query, (key,))}


def _write(path: Path, changes: dict[int, Row | None]) -> None:
    """Replace (or, for None, delete) the stored rows of the given versions."""
    key = execution_uuid(EXECUTION_ID).hex
    where = "WHERE originator_id=? AND originator_version=?"
    with closing(sqlite3.connect(path)) as db, db:
        for version, row in changes.items():
            if row is None:
                db.execute(f"DELETE FROM stored_events {where}", (key, version))
            else:
                db.execute(
                    f"UPDATE stored_events SET topic=?, state=? {where}", (*row, key, version)
                )


Tamper = Callable[[dict[int, Row]], tuple[dict[int, Row | None], int]]


@st.composite
def tampers(draw: st.DrawFn, versions: int) -> Tamper:
    """One change to a stored history of ``versions`` events, and where it breaks.

    Edit one value of one event (also inside its JSON payloads), give an event another
    event's topic, delete an event that is not the last, or swap two events' contents.
    Removing the last event is not among them: without a head recorded elsewhere, a
    shortened history is a valid history (``verify_chain`` takes an expected head
    for that).
    """
    kinds = ["edit", "topic", "swap", "delete"] if versions > 1 else ["edit"]
    kind = draw(st.sampled_from(kinds))
    if kind == "delete":
        version = draw(st.integers(1, versions - 1))
        return lambda rows: ({version: None}, version)
    version = draw(st.integers(1, versions))
    if kind in {"swap", "topic"}:
        other = draw(st.integers(1, versions).filter(lambda v: v != version))
        first = min(version, other)
        if kind == "swap":
            return lambda rows: ({version: rows[other], other: rows[version]}, first)

        def retopic(rows: dict[int, Row]) -> tuple[dict[int, Row | None], int]:
            topic, state = rows[version]
            other_topic = rows[other][0]
            new_topic = other_topic if other_topic != topic else topic + "X"
            return {version: (new_topic, state)}, version

        return retopic
    pick = draw(st.integers(0, 10_000))

    def edit(rows: dict[int, Row]) -> tuple[dict[int, Row | None], int]:
        topic, state = rows[version]
        document = json.loads(state)
        leaves = _leaves(document)
        changed = _edit(document, leaves[pick % len(leaves)])
        return {version: (topic, json.dumps(changed).encode())}, version

    return edit


@given(workflow_runs(), command_schedules(), st.data())
def test_every_history_verifies_and_any_change_to_a_stored_event_is_detected(
    run: WorkflowRun, commands: tuple[Command, ...], data: st.DataObject
) -> None:
    """Invariant 6: "the hash chain verifies for every stored history, and any change
    to a stored event is detected".

    The stored history verifies; after one change to the SQLite rows (a value edited,
    a topic replaced, a row deleted, two rows swapped) ``Ledger.verify`` reports the
    history broken, at the first version changed, whether asked about that execution
    or about every one.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.db"
        final, _ = asyncio.run(_run_to_file(run, f"sqlite:///{path}", commands))
        with Ledger(f"sqlite:///{path}") as ledger:
            report = ledger.verify()
            assert report.ok, report.problems
            assert report.checked == final.version
        changes, broken_at = data.draw(tampers(final.version))(_rows(path))
        _write(path, changes)
        with Ledger(f"sqlite:///{path}") as ledger:
            for report in (ledger.verify(), ledger.verify(EXECUTION_ID)):
                assert not report.ok
                assert [problem.version for problem in report.problems] == [broken_at]
