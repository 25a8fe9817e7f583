"""Commands about executions' states: ``list``, ``show``, ``at``, ``cancel`` and ``pause``.

Reading commands open the store's ledger; ``cancel`` and ``pause`` go through an engine
that acts on the named execution only. A refused command (cancelling an execution that
has ended, say) records nothing and exits 2 with the reason.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import click

from flowledger.cli.operator_commands import actor_option
from flowledger.cli.options import actions_option, aware_time, common_options, load_actions
from flowledger.cli.rendering import (
    echo_json,
    executions_table,
    moment,
    print_rendered,
    print_state,
    state_to_dict,
    summary_of,
)
from flowledger.cli.sessions import engine_session, open_ledger, require_store
from flowledger.domain.state import ExecutionState
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.ledger import DEFAULT_LIST_LIMIT

_STATUS_NAMES = [status.value for status in ExecutionStatus]


def _print_state_result(state: ExecutionState, as_json: bool, title: str | None = None) -> int:
    if as_json:
        echo_json(state_to_dict(state))
    else:
        print_state(state, title)
    return 0


@click.command("list")
@click.option(
    "--status",
    type=click.Choice(_STATUS_NAMES, case_sensitive=False),
    help="Only executions in this status.",
)
@click.option("--workflow", "workflow_id", metavar="ID", help="Only executions of this workflow.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=DEFAULT_LIST_LIMIT,
    show_default=True,
    help="At most this many executions.",
)
@click.option(
    "--since",
    callback=aware_time,
    metavar="ISO-TIME",
    help="Only executions started at or after this time.",
)
@click.option(
    "--until",
    callback=aware_time,
    metavar="ISO-TIME",
    help="Only executions started at or before this time.",
)
@common_options
def list_command(
    *,
    status: str | None,
    workflow_id: str | None,
    limit: int,
    since: datetime | None,
    until: datetime | None,
    store: str | None,
    as_json: bool,
) -> int:
    """List executions, most recently started first."""
    with open_ledger(store) as ledger:
        states = ledger.list(
            status=status, workflow_id=workflow_id, limit=limit, since=since, until=until
        )
    if as_json:
        echo_json([summary_of(state) for state in states])
    elif states:
        print_rendered(executions_table(states))
    else:
        click.echo("no executions")
    return 0


@click.command("show")
@click.argument("execution_id", metavar="ID")
@common_options
def show(execution_id: str, store: str | None, as_json: bool) -> int:
    """Show an execution's state: steps, outputs, error."""
    with open_ledger(store) as ledger:
        state = ledger.get(execution_id)
    return _print_state_result(state, as_json)


@click.command("at")
@click.argument("execution_id", metavar="ID")
@click.option(
    "--version", "version", type=click.IntRange(min=1), help="Right after this event (from 1)."
)
@click.option(
    "--time",
    "at",
    callback=aware_time,
    metavar="ISO-TIME",
    help="As of this moment (ISO 8601 with offset).",
)
@common_options
def at_command(
    execution_id: str, version: int | None, at: datetime | None, store: str | None, as_json: bool
) -> int:
    """Show an execution's state at a version or a moment."""
    if (version is None) == (at is None):
        raise click.UsageError("give exactly one of --version N and --time ISO")
    with open_ledger(store) as ledger:
        state = ledger.get(execution_id, version=version, at=at)
    title = f"as of {moment(at, 'auto')}" if at is not None else f"at version {version}"
    return _print_state_result(state, as_json, title=f"execution {execution_id} {title}")


@click.command("cancel")
@click.argument("execution_id", metavar="ID")
@click.option("--reason", default="cancelled", show_default=True, help="Why (recorded).")
@actor_option("cancels it")
@click.option("--rollback", is_flag=True, help="Compensate completed steps that declare it.")
@actions_option("Module with the compensating actions --rollback calls (see run --actions).")
@common_options
def cancel(
    *,
    execution_id: str,
    reason: str,
    actor: str,
    rollback: bool,
    actions_module: str | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Cancel an execution (optionally rolling it back)."""
    require_store(store)
    actions = load_actions(actions_module) if actions_module else None

    async def command() -> ExecutionState:
        async with engine_session(store, actions) as engine:
            return await engine.cancel_workflow(
                execution_id, reason, actor=actor, rollback=rollback
            )

    return _report_command(asyncio.run(command()), as_json)


@click.command("pause")
@click.argument("execution_id", metavar="ID")
@click.option("--reason", default="requested", show_default=True, help="Why (recorded).")
@actor_option("pauses it")
@common_options
def pause(execution_id: str, reason: str, actor: str, store: str | None, as_json: bool) -> int:
    """Pause an execution; nothing new starts until it is resumed."""
    require_store(store)

    async def command() -> ExecutionState:
        async with engine_session(store) as engine:
            return await engine.pause_workflow(execution_id, reason, actor=actor)

    return _report_command(asyncio.run(command()), as_json)


def _report_command(state: ExecutionState, as_json: bool) -> int:
    if as_json:
        echo_json(state_to_dict(state))
    else:
        click.echo(f"execution {state.execution_id}: {state.status.value}")
    return 0
