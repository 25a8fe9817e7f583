"""Data-protection commands: ``forget``, ``hold``, ``release``, ``purge``, ``certificate``.

Each names who acts (``--actor``, by default the login name) and why (``--reason``,
required), and is recorded on the executions it concerns. Exit codes: 0 done, 2 bad
input or a refused command (nothing recorded), with one line on stderr.
"""

from __future__ import annotations

from datetime import datetime

import click

from flowledger.cli.operator_commands import actor_option
from flowledger.cli.options import aware_time, common_options
from flowledger.cli.rendering import echo_json
from flowledger.cli.sessions import open_ledger

_REASON = "Why (recorded)."


@click.command("forget")
@click.argument("subject_id", metavar="SUBJECT")
@actor_option("asks for the erasure")
@click.option("--reason", required=True, help="Why, e.g. the erasure request's reference.")
@common_options
def forget_command(
    subject_id: str, actor: str, reason: str, store: str | None, as_json: bool
) -> int:
    """Erase a data subject's personal data (destroy its key); histories still verify."""
    with open_ledger(store) as ledger:
        report = ledger.forget_subject(subject_id, actor, reason)
    if as_json:
        echo_json(report.to_dict())
    else:
        gone = "destroyed" if report.key_destroyed else "was not there to destroy (already gone)"
        click.echo(f"subject key {report.subject_key} {gone}")
        click.echo(f"erasure recorded on {len(report.executions)} execution(s)")
        for execution_id in report.executions:
            click.echo(f"  {execution_id}")
    return 0


@click.command("hold")
@click.argument("execution_id", metavar="ID")
@actor_option("places the hold")
@click.option("--reason", required=True, help=_REASON)
@common_options
def hold_command(
    execution_id: str, actor: str, reason: str, store: str | None, as_json: bool
) -> int:
    """Place a legal hold on an execution: it is never purged until released."""
    with open_ledger(store) as ledger:
        ledger.place_legal_hold(execution_id, actor, reason)
    return _done({"execution_id": execution_id, "legal_hold": True}, as_json)


@click.command("release")
@click.argument("execution_id", metavar="ID")
@actor_option("releases the hold")
@click.option("--reason", required=True, help=_REASON)
@common_options
def release_command(
    execution_id: str, actor: str, reason: str, store: str | None, as_json: bool
) -> int:
    """Release an execution's legal hold (its retention applies again)."""
    with open_ledger(store) as ledger:
        ledger.release_legal_hold(execution_id, actor, reason)
    return _done({"execution_id": execution_id, "legal_hold": False}, as_json)


@click.command("purge")
@actor_option("purges")
@click.option("--reason", required=True, help=_REASON)
@click.option("--dry-run", is_flag=True, help="List what would be purged; change nothing.")
@click.option(
    "--now", callback=aware_time, metavar="ISO", help="Purge as of this moment (default: now)."
)
@common_options
def purge_command(
    *,
    actor: str,
    reason: str,
    dry_run: bool,
    now: datetime | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Purge payloads past their workflow's retention (not those under legal hold)."""
    with open_ledger(store) as ledger:
        certificates = ledger.purge(actor, reason, now=now, dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "certificates": certificates})
        return 0
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {len(certificates)} execution(s)")
    for certificate in certificates:
        click.echo(f"  {certificate['execution_id']} (ended {certificate['ended_at']})")
    return 0


@click.command("certificate")
@click.argument("execution_id", metavar="ID")
@common_options
def certificate_command(execution_id: str, store: str | None, as_json: bool) -> int:
    """Show the deletion certificate of a purged execution (exit 1 when not purged)."""
    with open_ledger(store) as ledger:
        certificate = ledger.deletion_certificate(execution_id)
    if certificate is None:
        click.echo(f"execution {execution_id} was not purged", err=True)
        return 1
    echo_json(certificate)  # the certificate is JSON either way
    return 0


def _done(summary: dict[str, object], as_json: bool) -> int:
    if as_json:
        echo_json(summary)
    else:
        held = "under legal hold" if summary["legal_hold"] else "no longer under legal hold"
        click.echo(f"execution {summary['execution_id']}: {held}")
    return 0
