"""Commands that read a definition file: ``validate`` and ``graph``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from flowledger.cli.mermaid import definition_to_mermaid
from flowledger.domain.definition import WorkflowDefinition, load_definition
from flowledger.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED_CHECK = 1


def common_options(command: F) -> F:
    """Add the options every command takes: ``--store`` and ``--json``."""
    command = click.option(
        "--store",
        "store",
        envvar="FLOWLEDGER_STORE",
        default=None,
        help="Store URL (memory://, sqlite:///path.db, postgresql://...).",
    )(command)
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(command)


def _read_definition(path: Path) -> WorkflowDefinition:
    if not path.is_file():
        raise click.BadParameter(f"no such file: {path}", param_hint="FILE")
    return load_definition(path)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@common_options
def validate(file: Path, store: str | None, as_json: bool) -> int:
    """Check a workflow definition and list every problem found."""
    del store  # accepted for uniformity; validation needs no store
    try:
        definition = _read_definition(file)
    except DefinitionError as error:
        problems = [{"path": p.path, "message": p.message} for p in error.errors]
        if as_json:
            click.echo(json.dumps({"valid": False, "problems": problems}, indent=2))
        else:
            click.echo(f"{file}: {len(problems)} problem(s)")
            for problem in problems:
                click.echo(f"  {problem['path']}: {problem['message']}")
        return EXIT_FAILED_CHECK
    summary = _summary(definition)
    if as_json:
        click.echo(json.dumps({"valid": True, **summary}, indent=2))
    else:
        click.echo(f"{file}: valid workflow {definition.id!r} ({len(definition.steps)} steps)")
        click.echo(f"  hash {definition.hash}")
        for step in summary["steps"]:
            after = ", ".join(step["after"]) or "(root)"
            click.echo(f"  {step['id']:<24} {step['action'] or '(trigger)':<16} after {after}")
    return 0


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@common_options
def graph(file: Path, store: str | None, as_json: bool) -> int:
    """Print a workflow definition as a Mermaid flowchart."""
    del store
    definition = _read_definition(file)
    text = definition_to_mermaid(definition)
    click.echo(json.dumps({"mermaid": text}) if as_json else text)
    return 0


def _summary(definition: WorkflowDefinition) -> dict[str, Any]:
    return {
        "id": definition.id,
        "hash": definition.hash,
        "steps": [
            {"id": step.id, "action": step.action, "after": list(step.upstream_ids)}
            for step in definition.steps
        ],
    }
