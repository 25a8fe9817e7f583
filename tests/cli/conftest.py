"""Workflow files and stores for the command-line tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger.cli.main import run

HERE = Path(__file__).resolve().parent
ACTIONS_PATH = HERE / "cli_actions.py"
ACTIONS_MODULE = "tests.cli.cli_actions"

GREETING = {
    "id": "greeting",
    "steps": [
        {
            "id": "greet",
            "action": "greet",
            "parameters": {"name": "${input.name}"},
            "compensate": {
                "action": "undo",
                "parameters": {"greeting": "${greet.output.greeting}"},
            },
        },
        {"id": "shout", "action": "echo", "parameters": {"text": "${greet.output.greeting}!"}},
    ],
}
"""Completes when ``name`` is given, pauses waiting for ``${input.name}`` otherwise."""

FAILING = {
    "id": "failing",
    "steps": [
        {"id": "first", "action": "noop"},
        {"id": "boom", "action": "explode", "parameters": {"message": "it broke"}},
    ],
}

HOLDING = {
    "id": "holding",
    "steps": [
        {"id": "held", "action": "hold"},
        {"id": "greet", "action": "greet", "parameters": {"name": "${input.name}"}},
    ],
}


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite store in a fresh file."""
    return f"sqlite:///{tmp_path}/cli.db"


@pytest.fixture
def workflow(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Write a definition to a JSON file and return its path."""

    def write(definition: dict[str, Any]) -> Path:
        path = tmp_path / f"{definition['id']}.json"
        path.write_text(json.dumps(definition), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli_json(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, Any]]:
    """Run the command line in process with ``--json``; return its code and document."""

    def call(*argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = run([*argv, "--json"])
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None

    return call


@pytest.fixture
def started(
    store: str,
    workflow: Callable[[dict[str, Any]], Path],
    cli_json: Callable[..., tuple[int, Any]],
) -> Callable[..., dict[str, Any]]:
    """Run a definition through ``flowledger run --json``; return its final state."""

    def start(definition: dict[str, Any], *options: str) -> dict[str, Any]:
        path = workflow(definition)
        _, state = cli_json(
            "run", str(path), "--actions", ACTIONS_MODULE, "--store", store, *options
        )
        return dict(state)

    return start
