"""Fixtures and small helpers for the ``WorkflowEngine`` tests.

Every engine here records to a real SQLite file in the test's ``tmp_path``; nothing is
mocked. Actions that must stay in flight wait on an :class:`asyncio.Event` (a
:class:`Gate`), never on a timer, and every wait has a timeout so that broken code fails
a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger import ExecutionState, HistoryEntry, WorkflowEngine

WAIT = 3.0
"""Seconds any single wait in a test may take before the test fails."""

FAST_RETRY = {"max_attempts": 3, "initial_interval": 0.01, "backoff": 2.0, "jitter": 0}
"""A retry policy quick enough for tests."""

NO_RETRY = {"max_attempts": 1}


def step(step_id: str, action: str = "echo", **options: Any) -> dict[str, Any]:
    """Return a step of the steps format (``parameters`` default to ``{}``)."""
    return {"id": step_id, "action": action, "parameters": options.pop("parameters", {}), **options}


def workflow(*steps: dict[str, Any], workflow_id: str = "wf", **top: Any) -> dict[str, Any]:
    """Return a definition of the steps format."""
    return {"id": workflow_id, "steps": list(steps), **top}


def graph(
    nodes: list[dict[str, Any]], connections: list[dict[str, Any]], workflow_id: str = "graph"
) -> dict[str, Any]:
    """Return a definition of the graph format."""
    return {"id": workflow_id, "nodes": nodes, "connections": connections}


def node(node_id: str, action: str = "echo", **config: Any) -> dict[str, Any]:
    """Return an action node of the graph format."""
    return {"id": node_id, "config": {"action": action, **config}}


def types_of(history: list[HistoryEntry]) -> list[str]:
    """Return the event names of a history, in order."""
    return [entry.type for entry in history]


def entries(
    history: list[HistoryEntry], kind: str, step_id: str | None = None
) -> list[HistoryEntry]:
    """Return the entries of one event type (for one step, if given), in order."""
    return [e for e in history if e.type == kind and (step_id is None or e.step_id == step_id)]


def version_of(history: list[HistoryEntry], kind: str, step_id: str | None = None) -> int:
    """Return the version of the only event of this type (for this step)."""
    found = entries(history, kind, step_id)
    assert len(found) == 1, f"expected one {kind} for {step_id}, found {len(found)}"
    return found[0].version


def statuses(state: ExecutionState) -> dict[str, str]:
    """Return each step's status as plain text."""
    return {step_id: step.status.value for step_id, step in state.steps.items()}


async def wait(awaitable: Any) -> Any:
    """Await with the test-wide timeout, so a broken engine fails instead of hanging."""
    return await asyncio.wait_for(awaitable, WAIT)


class Gate:
    """Holds an action in flight until the test opens it.

    ``entered`` is set each time the action is reached; the action then waits for
    ``opened``. ``calls`` records the keyword arguments of every call.
    """

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **parameters: Any) -> dict[str, Any]:
        self.calls.append(parameters)
        self.entered.set()
        await asyncio.wait_for(self.opened.wait(), WAIT)
        return {"gate": "passed", **parameters}

    async def reached(self) -> None:
        """Wait until the action is running."""
        await wait(self.entered.wait())

    def open(self) -> None:
        """Let the action (and later calls) return."""
        self.opened.set()


class Recorder:
    """An action that records its calls and returns its parameters."""

    def __init__(self, name: str, log: list[str] | None = None) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **parameters: Any) -> dict[str, Any]:
        self.calls.append(parameters)
        self.log.append(self.name)
        return dict(parameters)


class EventWatcher:
    """A listener that sets an event when a given history entry is saved."""

    def __init__(self, kind: str, step_id: str | None = None) -> None:
        self.kind = kind
        self.step_id = step_id
        self.seen = asyncio.Event()

    def __call__(self, entry: HistoryEntry) -> None:
        if entry.type == self.kind and (self.step_id is None or entry.step_id == self.step_id):
            self.seen.set()

    async def saved(self) -> None:
        """Wait until the entry has been saved."""
        await wait(self.seen.wait())


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite store in the test's own directory."""
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
async def make_engine(store_url: str) -> AsyncIterator[Callable[..., WorkflowEngine]]:
    """Build engines on the test's store; every one is stopped and closed afterwards."""
    made: list[WorkflowEngine] = []

    def make(**options: Any) -> WorkflowEngine:
        engine = WorkflowEngine(store=options.pop("store", store_url), **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.stop()
        engine.close()


@pytest.fixture
async def engine(make_engine: Callable[..., WorkflowEngine]) -> AsyncIterator[WorkflowEngine]:
    """A started engine on a SQLite file in ``tmp_path``."""
    async with make_engine() as started:
        yield started
