"""Commands that read a definition: ``validate`` and ``graph``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from flowledger.cli.mermaid import definition_to_mermaid
from flowledger.cli.options import EXIT_FAILED, common_options
from flowledger.cli.sessions import open_ledger
from flowledger.domain.definition import WorkflowDefinition, load_definition
from flowledger.errors import DefinitionError

__all__ = ["common_options", "graph", "read_definition", "validate"]


def read_definition(path: Path) -> WorkflowDefinition:
    """Load a definition file.

    Raises:
        click.BadParameter: There is no such file.
        DefinitionError: The file is not a valid definition.
    """
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
        definition = read_definition(file)
    except DefinitionError as error:
        problems = [{"path": p.path, "message": p.message} for p in error.errors]
        if as_json:
            click.echo(json.dumps({"valid": False, "problems": problems}, indent=2))
        else:
            click.echo(f"{file}: {len(problems)} problem(s)")
            for problem in problems:
                click.echo(f"  {problem['path']}: {problem['message']}")
        return EXIT_FAILED
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
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option(
    "--execution",
    "execution_id",
    metavar="ID",
    help="Colour the steps by this execution's step statuses; without FILE, draw the "
    "definition the execution recorded.",
)
@common_options
def graph(file: Path | None, execution_id: str | None, store: str | None, as_json: bool) -> int:
    """Print a workflow definition as a Mermaid flowchart."""
    if file is None and execution_id is None:
        raise click.UsageError("give a definition FILE, --execution ID, or both")
    statuses: dict[str, str] = {}
    definition = read_definition(file) if file is not None else None
    if execution_id is not None:
        with open_ledger(store) as ledger:
            state = ledger.get(execution_id)
            statuses = {step_id: step.status.value for step_id, step in state.steps.items()}
            if definition is None:
                definition = load_definition(ledger.export(execution_id)["definition"])
    assert definition is not None  # FILE or --execution gave one
    text = definition_to_mermaid(definition, statuses)
    if as_json:
        payload: dict[str, Any] = {"mermaid": text}
        if execution_id is not None:
            payload.update(execution_id=execution_id, statuses=statuses)
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(text, nl=False)
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
