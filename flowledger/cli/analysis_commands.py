"""Looking back at executions: ``diff``, ``import``, ``replay`` and ``metrics``.

``diff`` compares two moments of one execution, or two executions step by step.
``import`` stores an exported bundle after verifying it (``--check`` only verifies, and
exits 1 when the bundle does not). ``replay`` re-runs a recorded execution's input on
a changed definition in memory, running no action. ``metrics`` summarises steps per
workflow and action from the step-metrics read model.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from flowledger.cli.options import EXIT_FAILED, aware_time, common_options, json_object, read_bundle
from flowledger.cli.rendering import echo_json, print_rendered
from flowledger.cli.sessions import open_ledger
from flowledger.engine.bundles import verify_bundle
from flowledger.engine.ledger import Ledger, Moment
from flowledger.projections.step_metrics import StepMetrics


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> Moment | None:
    """Parse a moment: an event version (a whole number) or an ISO time with offset."""
    if value is None or not value.strip().isdigit():
        moment: datetime | None = aware_time(ctx, param, value)
        return moment
    return int(value)


@click.command("diff")
@click.argument("execution_id", metavar="ID")
@click.argument("other_id", metavar="[OTHER]", required=False)
@click.option(
    "--from",
    "before",
    callback=_moment,
    metavar="VERSION|ISO-TIME",
    help="The earlier moment of ID (default: its first event).",
)
@click.option(
    "--to", "after", callback=_moment, metavar="VERSION|ISO-TIME", help="The later (default: now)."
)
@common_options
def diff(  # click passes every parameter by name
    *,
    execution_id: str,
    other_id: str | None,
    before: Moment | None,
    after: Moment | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Show what changed between two moments of ID, or between ID and OTHER."""
    if other_id is not None and (before is not None or after is not None):
        raise click.UsageError("give OTHER or --from/--to, not both")
    with open_ledger(store) as ledger:
        if other_id is None:
            found = ledger.diff(execution_id, 1 if before is None else before, after)
        else:
            found = ledger.compare(execution_id, other_id)
    if as_json:
        echo_json(found.to_dict())
    else:
        click.echo("\n".join(found.lines()))
    return 0


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--check", is_flag=True, help="Only verify the bundle; store nothing.")
@common_options
def import_command(file: Path, check: bool, store: str | None, as_json: bool) -> int:
    """Verify an exported bundle and store its execution, exactly as recorded."""
    bundle = read_bundle(file)
    report = verify_bundle(bundle)
    if check or not report.ok:
        if as_json:
            echo_json(report.to_dict())
        else:
            _print_check(
                file, report.ok, [f"version {p.version}: {p.reason}" for p in report.problems]
            )
        return 0 if report.ok else EXIT_FAILED
    with Ledger(store) as ledger:  # importing into a new store creates it
        execution_id = ledger.import_bundle(bundle)
    if as_json:
        echo_json({"imported": execution_id, "events": len(bundle["events"])})
    else:
        click.echo(f"imported execution {execution_id} ({len(bundle['events'])} events, verified)")
    return 0


def _print_check(file: Path, ok: bool, problems: list[str]) -> None:
    if ok:
        click.echo(f"{file}: verified; the bundle's hash chain and definition are intact")
        return
    click.echo(f"{file}: NOT verified; {len(problems)} problem(s); nothing was stored")
    for problem in problems:
        click.echo(f"  {problem}")


@click.command("replay")
@click.argument("execution_id", metavar="ID")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--stubs",
    callback=json_object,
    metavar="JSON|@FILE",
    help="Outputs for steps that cannot be served from the record, by step id or action.",
)
@common_options
def replay(
    execution_id: str,
    file: Path,
    stubs: dict[str, Any] | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Replay ID's input on the definition in FILE, in memory, running no action."""
    if not file.is_file():
        raise click.BadParameter(f"no such file: {file}", param_hint="FILE")
    with open_ledger(store) as ledger:
        report = ledger.what_if(execution_id, file, stubs=stubs)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo("\n".join(report.lines()))
    return 0


@click.command("metrics")
@click.option("--workflow", "workflow_id", metavar="ID", help="Only this workflow's steps.")
@click.option("--action", metavar="NAME", help="Only steps that run this action.")
@common_options
def metrics(workflow_id: str | None, action: str | None, store: str | None, as_json: bool) -> int:
    """Show step metrics per workflow and action: counts, failure rate, durations."""
    with open_ledger(store) as ledger:
        rows = ledger.metrics(workflow_id, action)
    if as_json:
        echo_json([row.to_dict() for row in rows])
    else:
        print_rendered(_metrics_table(rows))
    return 0


def _metrics_table(rows: list[StepMetrics]) -> Table:
    table = Table(title="step metrics (attempts)")
    for name in ("workflow", "action", "count", "completed", "failed", "failure rate"):
        table.add_column(name, justify="right" if name not in ("workflow", "action") else "left")
    for name in ("retries", "timeouts", "p50 ms", "p95 ms", "max ms"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            row.workflow_id,
            row.action,
            str(row.count),
            str(row.completed),
            str(row.failed),
            f"{row.failure_rate:.1%}",
            str(row.retries),
            str(row.timeouts),
            *(_ms(value) for value in (row.p50_ms, row.p95_ms, row.max_ms)),
        )
    return table


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
