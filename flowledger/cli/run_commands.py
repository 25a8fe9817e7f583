"""``run``, which runs an execution in this process, and what it shares with ``resume``.

They follow the execution live, one line per notification (steps started, completed,
failed, retrying, skipped; the execution paused, resumed or ended), until it rests:
terminal, or PAUSED with no step still running. With ``--json`` they print nothing
until the end, then one JSON document: the final state, as ``show --json`` gives it.

Exit codes: 0 when the execution COMPLETED or rests PAUSED (the message names the
missing value and the ``resume`` command that continues it); 1 when it ended FAILED,
ROLLED_BACK, ROLLBACK_FAILED or CANCELLED; 2 for bad input, nothing run.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flowledger.cli.definition_commands import read_definition
from flowledger.cli.event_text import error_text, progress_line
from flowledger.cli.options import (
    actions_option,
    common_options,
    exit_code_for,
    json_object,
    load_actions,
)
from flowledger.cli.rendering import echo_json, state_to_dict
from flowledger.cli.sessions import DEFAULT_MAX_CONCURRENT, engine_session
from flowledger.domain.canonical import json_ready
from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.state import ExecutionState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.notifications import Notification
from flowledger.errors import ExecutionNotFoundError

Progress = Callable[[Notification], None]


def show_progress(note: Notification) -> None:
    """Print one line per notification (what ``run`` shows as an execution goes)."""
    click.echo(progress_line(note))


def ignore_progress(note: Notification) -> None:
    """Print nothing (``--json``: one document at the end)."""
    del note  # --json: the final document says it all


async def follow(
    engine: WorkflowEngine, execution_id: str, from_version: int, progress: Progress
) -> ExecutionState:
    """Report an execution's notifications after ``from_version`` until it rests.

    It rests when it is terminal, or PAUSED with no step still running: steps in flight
    when it paused are followed until they are recorded, so none is left running.
    """
    paused = False
    async for note in engine.subscribe(execution_id, from_version):
        progress(note)
        if note.is_final:
            break
        if note.status in ("PAUSED", "RESUMED"):
            paused = note.status == "PAUSED"
        if paused and _at_rest(await engine.get_workflow_status(execution_id)):
            break
    return await engine.get_workflow_status(execution_id)


def _at_rest(state: ExecutionState) -> bool:
    running = any(step.status is StepStatus.RUNNING for step in state.steps.values())
    return state.status is ExecutionStatus.PAUSED and not running


async def _existing(engine: WorkflowEngine, execution_id: str | None) -> ExecutionState | None:
    if execution_id is None:
        return None
    try:
        return await engine.get_workflow_status(execution_id)
    except ExecutionNotFoundError:
        return None


def report(state: ExecutionState, as_json: bool, actions_module: str | None) -> int:
    """Print how an execution rests and return the exit code that reports it."""
    if as_json:
        echo_json(state_to_dict(state))
        return exit_code_for(state.status)
    click.echo(f"execution {state.execution_id}: {state.status.value}")
    if state.error:
        click.echo(f"error: {error_text(state.error)}")
    if state.status is ExecutionStatus.PAUSED:
        click.echo(_resume_hint(state, actions_module))
    if state.outputs:
        click.echo("outputs:")
        click.echo(json.dumps(json_ready(state.outputs), indent=2, ensure_ascii=False))
    return exit_code_for(state.status)


def _resume_hint(state: ExecutionState, actions_module: str | None) -> str:
    """The ``resume`` command that continues a paused execution, ready to paste."""
    actions = f" --actions {shlex.quote(actions_module)}" if actions_module else ""
    command = f"flowledger resume {shlex.quote(state.execution_id)}{actions}"
    if state.paused_on is None:
        return f"paused by request; continue with: {command}"
    root, _, path = state.paused_on.partition(".")
    example: Any = "..."
    # input.customer.name becomes {"customer": {"name": "..."}}, merged into the input.
    for key in reversed(path.split(".") if root == "input" and path else []):
        example = {key.split("[")[0]: example}
    given = shlex.quote(json.dumps(example)) if isinstance(example, dict) else "..."
    return f"waiting for ${{{state.paused_on}}}; provide it with: {command} --input {given}"


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "input_data",
    callback=json_object,
    metavar="JSON|@file",
    help="Execution input (JSON object).",
)
@actions_option()
@click.option("--execution-id", metavar="KEY", help="Id of the execution (idempotent start).")
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CONCURRENT,
    show_default=True,
    help="Most steps running at once.",
)
@common_options
def run_command(
    *,
    file: Path,
    input_data: dict[str, Any] | None,
    actions_module: str | None,
    execution_id: str | None,
    max_concurrent: int,
    store: str | None,
    as_json: bool,
) -> int:
    """Run a workflow, showing each step as it happens."""
    definition = read_definition(file)
    actions = load_actions(actions_module) if actions_module else None
    progress = ignore_progress if as_json else show_progress

    async def start_and_follow() -> ExecutionState:
        async with engine_session(store, actions, max_concurrent) as engine:
            return await _start(engine, definition, input_data, execution_id, progress)

    return report(asyncio.run(start_and_follow()), as_json, actions_module)


async def _start(
    engine: WorkflowEngine,
    definition: WorkflowDefinition,
    input_data: dict[str, Any] | None,
    execution_id: str | None,
    progress: Progress,
) -> ExecutionState:
    existing = await _existing(engine, execution_id)
    if existing is not None:
        # An idempotent start runs nothing twice; the execution may belong to another
        # process, so its state is reported rather than followed.
        click.echo(f"execution {execution_id} exists already; nothing was started", err=True)
        return existing
    key = await engine.start_workflow(definition, input_data, execution_id=execution_id)
    return await follow(engine, key, 0, progress)
