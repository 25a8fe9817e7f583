"""The ``flowledger`` command: a thin layer over the public API.

Exit codes: 0 success, 1 a failed check or execution, 2 bad usage or bad input. Errors
are one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from flowledger.cli.definition_commands import graph, validate
from flowledger.errors import FlowledgerError

EXIT_BAD_INPUT = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowledger", prog_name="flowledger")
def cli() -> None:
    """flowledger: durable workflows whose every state change is a verifiable ledger event."""


cli.add_command(validate)
cli.add_command(graph)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` and return its exit code (no ``sys.exit``)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as error:
        click.echo(f"flowledger: {error.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except click.Abort:
        click.echo("flowledger: aborted", err=True)
        return EXIT_BAD_INPUT
    except FlowledgerError as error:
        click.echo(f"flowledger: {_one_line(str(error))}", err=True)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def _one_line(text: str) -> str:
    return " ".join(text.split())
