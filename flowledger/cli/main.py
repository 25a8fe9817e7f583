"""The ``flowledger`` command: a thin layer over the public API.

Exit codes: 0 success, 1 a failed check or execution, 2 bad usage or bad input. Errors
are one line on stderr (``flowledger: ...``), never a traceback.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Sequence

import click
from eventsourcing.domain import EventSourcingError

from flowledger.cli.analysis_commands import diff, import_command, metrics, replay
from flowledger.cli.audit_commands import export, history, verify
from flowledger.cli.bundle_commands import keygen_command, verify_bundle_command
from flowledger.cli.compliance_commands import (
    certificate_command,
    forget_command,
    hold_command,
    purge_command,
    release_command,
)
from flowledger.cli.definition_commands import graph, validate
from flowledger.cli.encryption_command import cipher_key_command
from flowledger.cli.execution_commands import at_command, cancel, list_command, pause, show
from flowledger.cli.operator_commands import resume_command, retry_command, skip_command
from flowledger.cli.options import EXIT_BAD_INPUT
from flowledger.cli.run_commands import run_command
from flowledger.cli.worker_command import worker_command
from flowledger.errors import FlowledgerError

__all__ = ["EXIT_BAD_INPUT", "cli", "main", "run"]

COMMANDS = (
    validate,
    graph,
    run_command,
    list_command,
    show,
    history,
    at_command,
    verify,
    cancel,
    pause,
    resume_command,
    retry_command,
    skip_command,
    worker_command,
    export,
    import_command,
    verify_bundle_command,
    keygen_command,
    cipher_key_command,
    forget_command,
    hold_command,
    release_command,
    purge_command,
    certificate_command,
    diff,
    replay,
    metrics,
)
"""Every command, in the order ``--help`` lists them."""


class _OrderedGroup(click.Group):
    """Lists commands in registration order (definition first, then operations, audit)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_OrderedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowledger", prog_name="flowledger")
def cli() -> None:
    """flowledger: durable workflows whose every state change is a verifiable ledger event."""


for _command in COMMANDS:
    cli.add_command(_command)


class _WarningLine(logging.Handler):
    """Writes a warning the library logs as one prefixed line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"flowledger: warning: {_one_line(record.getMessage())}", err=True)


def _report_warnings() -> None:
    logger = logging.getLogger("flowledger")
    if not any(isinstance(handler, _WarningLine) for handler in logger.handlers):
        logger.addHandler(_WarningLine(logging.WARNING))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` and return its exit code (no ``sys.exit``)."""
    _report_warnings()
    try:
        result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except Exception as error:  # the edge: a user sees one line, never a traceback
        click.echo(f"flowledger: {_one_line(message_of(error))}", err=True)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0


def message_of(error: Exception) -> str:
    """Return the one-line message that reports an error to the user."""
    if isinstance(error, click.ClickException):
        return error.format_message()
    if isinstance(error, click.Abort):
        return "aborted"
    if isinstance(error, FlowledgerError):
        return str(error)
    if isinstance(error, EventSourcingError | sqlite3.Error):
        return f"store error: {type(error).__name__}: {error}"
    if isinstance(error, OSError):
        return f"{error.strerror or type(error).__name__}: {error.filename or error}"
    return f"unexpected error: {type(error).__name__}: {error}"


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def _one_line(text: str) -> str:
    return " ".join(text.split())
