"""Operators' commands that set an execution going again: ``resume``, ``retry``, ``skip``.

Each records who acted (``--actor``, by default the login name of the user running the
command) and why (``--reason``; required for ``retry`` and ``skip``), then drives the
execution here and follows it until it rests, as ``run`` does. Exit codes are
``run``'s: 0 when it COMPLETED or rests PAUSED, 1 when it ended otherwise, 2 for a
refused command (nothing recorded) or bad input.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from flowledger.cli.options import actions_option, common_options, json_object, load_actions
from flowledger.cli.run_commands import follow, ignore_progress, report, show_progress
from flowledger.cli.sessions import engine_session, require_store
from flowledger.domain.state import ExecutionState
from flowledger.engine.engine import WorkflowEngine

F = TypeVar("F", bound=Callable[..., Any])

Act = Callable[[WorkflowEngine], Awaitable[ExecutionState]]


def login_name() -> str:
    """Return the name of the user running the command (``unknown`` if it has none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "unknown"


def actor_option(what: str) -> Callable[[F], F]:
    """The ``--actor`` option: who acts, recorded; by default the login name."""
    return click.option(
        "--actor",
        metavar="NAME",
        default=login_name,
        show_default="your login name",
        help=f"Who {what} (recorded).",
    )


def drive_and_follow(
    store: str | None, actions_module: str | None, execution_id: str, act: Act, as_json: bool
) -> int:
    """Apply an operator's command here, follow the execution until it rests, report it."""
    require_store(store)
    actions = load_actions(actions_module) if actions_module else None
    progress = ignore_progress if as_json else show_progress

    async def act_and_follow() -> ExecutionState:
        async with engine_session(store, actions) as engine:
            before = await engine.get_workflow_status(execution_id)
            await act(engine)
            return await follow(engine, execution_id, before.version, progress)

    return report(asyncio.run(act_and_follow()), as_json, actions_module)


@click.command("resume")
@click.argument("execution_id", metavar="ID")
@click.option(
    "--input",
    "input_data",
    callback=json_object,
    metavar="JSON|@file",
    help="Inputs to provide (JSON object).",
)
@actor_option("resumes it")
@click.option("--reason", help="Why it is resumed (recorded).")
@actions_option()
@common_options
def resume_command(
    *,
    execution_id: str,
    input_data: dict[str, Any] | None,
    actor: str,
    reason: str | None,
    actions_module: str | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Resume a paused execution here and follow it until it rests."""

    async def act(engine: WorkflowEngine) -> ExecutionState:
        return await engine.resume_workflow(execution_id, input_data, actor=actor, reason=reason)

    return drive_and_follow(store, actions_module, execution_id, act, as_json)


@click.command("retry")
@click.argument("execution_id", metavar="ID")
@actor_option("retries it")
@click.option("--reason", required=True, help="Why it is retried (recorded).")
@actions_option()
@common_options
def retry_command(
    *,
    execution_id: str,
    actor: str,
    reason: str,
    actions_module: str | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Retry a FAILED execution from its failure here, and follow it until it rests.

    The steps that failed it run again with their whole retry policy; completed steps
    are not repeated.
    """

    async def act(engine: WorkflowEngine) -> ExecutionState:
        return await engine.retry_workflow(execution_id, actor=actor, reason=reason)

    return drive_and_follow(store, actions_module, execution_id, act, as_json)


@click.command("skip")
@click.argument("execution_id", metavar="ID")
@click.argument("step_id", metavar="STEP")
@actor_option("skips it")
@click.option("--reason", required=True, help="Why the step is skipped (recorded).")
@click.option(
    "--output",
    "output",
    callback=json_object,
    metavar="JSON|@file",
    help="An output (JSON object) to stand in for the step's: references to it resolve to it.",
)
@actions_option()
@common_options
def skip_command(
    *,
    execution_id: str,
    step_id: str,
    actor: str,
    reason: str,
    output: dict[str, Any] | None,
    actions_module: str | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Skip a step that has not completed (pending, paused or failed); the steps after it run.

    Skipping the step that failed an execution reopens it. A step declared
    ``non_skippable`` is refused.
    """

    async def act(engine: WorkflowEngine) -> ExecutionState:
        return await engine.skip_step(
            execution_id, step_id, actor=actor, reason=reason, output=output
        )

    return drive_and_follow(store, actions_module, execution_id, act, as_json)
