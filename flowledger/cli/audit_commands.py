"""Audit commands: ``history``, ``verify`` and ``export``.

``history`` summarises each event with the audit timeline's text.
``verify`` exits 1 when any stored history does not verify against its hash chain.
``export --sign`` signs the bundle's chain head (see :mod:`flowledger.engine.signing`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from flowledger.cli.options import EXIT_FAILED, common_options
from flowledger.cli.rendering import echo_json, history_table, print_rendered
from flowledger.cli.sessions import open_ledger
from flowledger.engine.audit import VerifyReport, entry_json
from flowledger.engine.signing import sign_bundle
from flowledger.projections.timeline import audit_timeline


@click.command("history")
@click.argument("execution_id", metavar="ID")
@common_options
def history(execution_id: str, store: str | None, as_json: bool) -> int:
    """Show an execution's recorded events, in order."""
    with open_ledger(store) as ledger:
        entries = ledger.history(execution_id)
    lines = audit_timeline(entries)
    if as_json:
        pairs = zip(entries, lines, strict=True)
        echo_json([entry_json(entry) | {"summary": line.text} for entry, line in pairs])
    else:
        print_rendered(history_table(lines))
    return 0


@click.command("verify")
@click.argument("execution_id", metavar="[ID]", required=False)
@common_options
def verify(execution_id: str | None, store: str | None, as_json: bool) -> int:
    """Verify the hash chain of one execution's history, or of every one."""
    with open_ledger(store) as ledger:
        report = ledger.verify(execution_id)
    if as_json:
        echo_json(report.to_dict())
    else:
        print_verify_report(report)
    return 0 if report.ok else EXIT_FAILED


def print_verify_report(report: VerifyReport) -> None:
    """Print a verification summary and each problem found, one per line."""
    counted = f"{report.executions} execution(s), {report.checked} event(s) checked"
    if report.ok:
        click.echo(f"verified: {counted}; every hash chain is intact")
        return
    click.echo(f"NOT verified: {counted}; {len(report.problems)} problem(s)")
    for problem in report.problems:
        click.echo(f"  {problem.execution_id} at version {problem.version}: {problem.reason}")


@click.command("export")
@click.argument("execution_id", metavar="ID")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the bundle to this file instead of standard output.",
)
@click.option(
    "--sign",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="KEYFILE",
    help="Sign the bundle's chain head with this Ed25519 private key (PEM; see keygen).",
)
@click.option("--signer", metavar="NAME", help="Who signs, recorded in the signature (--sign).")
@common_options
def export(
    *,
    execution_id: str,
    output: Path | None,
    key_file: Path | None,
    signer: str | None,
    store: str | None,
    as_json: bool,
) -> int:
    """Export an execution's definition and history as one JSON bundle, optionally signed."""
    if signer is not None and key_file is None:
        raise click.UsageError("--signer needs --sign KEYFILE")
    key_pem = key_file.read_bytes() if key_file is not None else None
    with open_ledger(store) as ledger:
        bundle = ledger.export(execution_id)
    if key_pem is not None:
        bundle = sign_bundle(bundle, key_pem, signer=signer, at=datetime.now(UTC))
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)  # the bundle is JSON either way
        return 0
    output.write_text(text + "\n", encoding="utf-8")
    if as_json:
        echo_json(_export_summary(bundle, output))
    else:
        click.echo(f"exported {len(bundle['events'])} event(s) of {execution_id} to {output}")
        if "signature" in bundle:
            click.echo(_signature_line(bundle["signature"]))
    return 0


def _export_summary(bundle: dict[str, Any], output: Path) -> dict[str, Any]:
    summary = {
        "execution_id": bundle["execution_id"],
        "output": str(output),
        "events": len(bundle["events"]),
        "chain_head": bundle["chain_head"],
        "signed": "signature" in bundle,
    }
    if "signature" in bundle:
        summary["public_key_fingerprint"] = bundle["signature"]["public_key_fingerprint"]
    return summary


def _signature_line(signature: dict[str, Any]) -> str:
    signer = signature["signed"]["signer"]
    named = f" by {signer}" if signer is not None else ""
    return f"signed{named} with key {signature['public_key_fingerprint']}"
