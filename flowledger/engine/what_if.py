"""What-if replay: a recorded execution's input, run again on a changed definition.

The replay runs on an in-memory engine, and no real action is ever called: a step whose
action and resolved parameters are those the recorded execution ran gets its recorded
outcome (output, or failure), every other call gets a stub. The recorded execution is
only read. The result is a :class:`WhatIfReport` that compares both runs step by step
and names the first divergence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowledger.domain.definition import RetryPolicy, WorkflowDefinition, load_definition
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.engine.actions import ActionRegistry
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.what_if_actions import ReplayActions
from flowledger.engine.what_if_record import RecordedExecution, read_recorded
from flowledger.engine.what_if_report import StepComparison, WhatIfReport, build_report

if TYPE_CHECKING:  # the ledger may offer what-if replay: no import cycle at run time
    from flowledger.engine.ledger import Ledger

__all__ = ["StepComparison", "WhatIfReport", "replay_what_if", "what_if"]

DefinitionSource = WorkflowDefinition | Mapping[str, Any] | str | Path
"""Anything :func:`~flowledger.domain.definition.load_definition` accepts, or a definition."""

# Served and stubbed failures are non-retryable already; this covers anything else
# (a stub that outlives a step's timeout), so a replay never waits for a backoff.
_NO_RETRY = RetryPolicy(max_attempts=1)


async def what_if(
    ledger: Ledger,
    execution_id: str,
    definition: DefinitionSource,
    *,
    stubs: Mapping[str, Any] | None = None,
) -> WhatIfReport:
    """Replay a recorded execution's input on ``definition``, without side effects.

    The replay starts with the execution's final input: the input it started with, with
    every input provided later (on resume) merged in. Each action call of the replay is
    answered without running the action, built-ins included:

    - served: the recorded execution called the same action for the same step id with
      the same resolved parameters (canonical JSON). Its recorded output is returned,
      or its recorded failure raised at once as a non-retryable error with the
      recorded type and message (a step that failed after several attempts fails once).
      Compensations are served the same way.
    - stubbed: otherwise. ``stubs[step_id]``, else ``stubs[action]``, answers: a value
      is returned as the output, a callable is called with the parameters as keyword
      arguments (it may be async; what it raises fails the step at once). Without a
      stub the output is ``{}``.

    Args:
        ledger: The ledger holding the recorded execution; it is only read.
        execution_id: The recorded execution.
        definition: The definition to replay on (a definition, dict, JSON/YAML text or
            path).
        stubs: Step id or action name to a stub value or callable.

    Returns:
        The comparison of the recorded execution and the replay.

    Raises:
        ExecutionNotFoundError: No execution has this id.
        DefinitionError: ``definition`` is invalid.
        SchemaValidationError: The recorded input does not match the new definition's
            input schema.
    """
    workflow = (
        definition if isinstance(definition, WorkflowDefinition) else load_definition(definition)
    )
    record = await asyncio.to_thread(read_recorded, ledger, execution_id)
    actions = ReplayActions(record, workflow, stubs)
    state, history = await _replay(record, workflow, actions)
    return build_report(record, workflow, state, history, actions.calls)


def replay_what_if(
    ledger: Ledger,
    execution_id: str,
    definition: DefinitionSource,
    *,
    stubs: Mapping[str, Any] | None = None,
) -> WhatIfReport:
    """Run :func:`what_if` to its end from synchronous code, and return its report.

    Works whether or not an event loop is running in the calling thread: when one is,
    the replay runs on a fresh loop in a worker thread (the calling thread waits for
    it), so it can be called from a synchronous function that a coroutine called.
    Stub callables then run in that worker thread.

    Args:
        ledger: The ledger holding the recorded execution; it is only read.
        execution_id: The recorded execution.
        definition: The definition to replay on.
        stubs: Step id or action name to a stub value or callable.

    Returns:
        The comparison of the recorded execution and the replay.

    Raises:
        ExecutionNotFoundError, DefinitionError, SchemaValidationError: As for
            :func:`what_if`.
    """
    replay = what_if(ledger, execution_id, definition, stubs=stubs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: run one here
        return asyncio.run(replay)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowledger-what-if") as pool:
        return pool.submit(asyncio.run, replay).result()


class _ReplayEngine(WorkflowEngine):
    """An in-memory engine whose every action name resolves to a replay stand-in."""

    def __init__(self, actions: ActionRegistry, steps: int) -> None:
        super().__init__(
            "memory://",
            # Every step that is ready runs at once: stand-ins answer at once anyway.
            max_concurrent_steps=max(steps, 1),
            retry_policy=_NO_RETRY,
            snapshot_interval=0,
            recover=False,
        )
        self._stand_ins = actions

    @property
    def actions(self) -> ActionRegistry:
        """The replay's stand-ins only: the built-ins, too, must never really run."""
        return self._stand_ins


async def _replay(
    record: RecordedExecution, definition: WorkflowDefinition, actions: ReplayActions
) -> tuple[ExecutionState, list[HistoryEntry]]:
    engine = _ReplayEngine(actions.registry(), len(definition.steps))
    engine.add_listener(actions.listen)
    try:
        async with engine:
            state = await engine.run_workflow(
                definition, record.input, execution_id=record.execution_id
            )
            return state, engine.ledger.history(state.execution_id)
    finally:
        engine.close()
