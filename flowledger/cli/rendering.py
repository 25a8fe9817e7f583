"""Output of the commands: rich tables for people, plain JSON for programs.

The console never interprets markup (recorded data may hold ``[brackets]``) and writes
colour only to a terminal. JSON is written with datetimes in ISO 8601.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from flowledger.cli.event_text import error_text, format_duration
from flowledger.domain.canonical import json_ready
from flowledger.domain.state import ExecutionState, StepState
from flowledger.projections.timeline import TimelineLine

PIPE_WIDTH = 1000
"""Columns of a table written to a pipe or file, so that no row wraps (a terminal
gives its own width)."""


def print_rendered(*renderables: RenderableType) -> None:
    """Print tables and text on standard output: no markup, colour only on a terminal.

    Written to a pipe or a file, every row stays on one line and carries no trailing
    padding, so the output reads well in ``grep`` and ``diff``.
    """
    console = Console(markup=False, highlight=False, emoji=False)
    if console.is_terminal:
        for renderable in renderables:
            console.print(renderable)
        return
    console.width = PIPE_WIDTH
    with console.capture() as captured:
        for renderable in renderables:
            console.print(renderable)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def echo_json(value: Any) -> None:
    """Write ``value`` to standard output as indented JSON (datetimes in ISO 8601)."""
    click.echo(json.dumps(json_ready(value), indent=2, ensure_ascii=False, default=str))


def moment(value: datetime | None, timespec: str = "seconds") -> str:
    """Return a moment in ISO 8601 (empty when there is none)."""
    return value.isoformat(timespec=timespec) if value is not None else ""


def _fields_of(value: Any) -> dict[str, Any]:
    return {field.name: json_ready(getattr(value, field.name)) for field in fields(value)}


def state_to_dict(state: ExecutionState) -> dict[str, Any]:
    """Return an execution's state as a JSON-ready dict, every step included."""
    data = _fields_of(state)
    data["status"] = state.status.value
    data["steps"] = {step_id: _step_to_dict(step) for step_id, step in state.steps.items()}
    return data


def _step_to_dict(step: StepState) -> dict[str, Any]:
    data = _fields_of(step)
    data["status"] = step.status.value
    return data


def summary_of(state: ExecutionState) -> dict[str, Any]:
    """Return the fields ``list`` shows of an execution, JSON-ready."""
    return {
        "execution_id": state.execution_id,
        "workflow_id": state.workflow_id,
        "status": state.status.value,
        "version": state.version,
        "created_at": moment(state.created_at, "auto"),
        "updated_at": moment(state.updated_at, "auto"),
    }


def print_state(state: ExecutionState, title: str | None = None) -> None:
    """Print an execution's state: its header, a table of its steps, its outputs."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    rows = [
        ("execution", state.execution_id),
        ("workflow", state.workflow_id),
        ("status", state.status.value),
        ("version", str(state.version)),
        ("created", moment(state.created_at)),
        ("updated", moment(state.updated_at)),
        ("input", json.dumps(json_ready(state.input), ensure_ascii=False)),
        ("error", error_text(state.error)),
        ("paused on", f"${{{state.paused_on}}}" if state.paused_on else ""),
    ]
    for name, value in rows:
        if value:
            header.add_row(name, value)
    parts: list[RenderableType] = [Text(title, style="bold")] if title else []
    parts += [header, steps_table(state.steps.values())]
    if state.outputs:
        outputs = json.dumps(json_ready(state.outputs), indent=2, ensure_ascii=False)
        parts += [Text("outputs", style="bold"), outputs]
    print_rendered(*parts)


def steps_table(steps: Iterable[StepState]) -> Table:
    """Return a table of steps: status, attempts, duration and error."""
    table = Table("step", "status", "attempts", "duration", "error", box=None, pad_edge=False)
    for step in steps:
        status = step.status.value + (f" ({step.reason})" if step.reason else "")
        table.add_row(
            step.step_id,
            status,
            str(step.attempts),
            format_duration(step.duration_ms),
            error_text(step.error),
        )
    return table


def executions_table(states: Sequence[ExecutionState]) -> Table:
    """Return a table of executions, one row each, in the order given."""
    table = Table(
        "id", "workflow", "status", "version", "created", "updated", box=None, pad_edge=False
    )
    for state in states:
        table.add_row(
            state.execution_id,
            state.workflow_id,
            state.status.value,
            str(state.version),
            moment(state.created_at),
            moment(state.updated_at),
        )
    return table


def history_table(lines: Iterable[TimelineLine]) -> Table:
    """Return the table of an execution's history, one audit-timeline line per event."""
    table = Table("version", "time", "event", "step", "summary", box=None, pad_edge=False)
    for line in lines:
        table.add_row(
            str(line.version),
            moment(line.timestamp, "milliseconds"),
            line.type,
            line.step_id or "",
            line.text,
        )
    return table
