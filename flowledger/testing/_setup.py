"""Preparing a check: the definition and fakes it runs, and where its stores go."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flowledger.domain.definition import RetryPolicy, WorkflowDefinition, load_definition
from flowledger.engine.actions import BUILTIN_ACTIONS
from flowledger.testing._fakes import Fake, as_fake


def as_definition(
    definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
) -> WorkflowDefinition:
    """Return ``definition`` loaded (itself when it already is a definition)."""
    if isinstance(definition, WorkflowDefinition):
        return definition
    return load_definition(definition)


def fakes_for(
    definition: WorkflowDefinition, fakes: Mapping[str, Fake | Callable[..., Any]]
) -> dict[str, Fake]:
    """Return the fakes, refusing a definition that calls an action without one."""
    needed = {step.action for step in definition.steps if step.action}
    needed |= {step.compensate.action for step in definition.steps if step.compensate}
    missing = sorted(needed - set(fakes) - set(BUILTIN_ACTIONS.names()))
    if missing:
        msg = f"no fake for action(s) {', '.join(missing)}: give one in fakes"
        raise ValueError(msg)
    return {name: as_fake(fake) for name, fake in fakes.items()}


def instant(policy: RetryPolicy) -> RetryPolicy:
    return dataclasses.replace(policy, initial_interval=0.0, max_interval=0.0, jitter=0.0)


def without_retry_waits(definition: WorkflowDefinition) -> WorkflowDefinition:
    """Return the definition with its steps' retry waits at 0 (itself if none waits)."""
    if all(step.retry is None for step in definition.steps):
        return definition
    data = definition.to_dict()
    for step in data["steps"]:
        if step["retry"] is not None:
            step["retry"].update(initial_interval=0.0, max_interval=0.0, jitter=0.0)
    return load_definition(data)


class Stores:
    """Where a check's SQLite files go: a temporary directory, or one kept for inspection."""

    def __init__(self, store_dir: str | Path | None) -> None:
        self.kept = store_dir is not None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="flowledger-check-")
            self.directory = Path(self._temporary.name)
        else:
            Path(store_dir).mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="check-", dir=store_dir))

    def new(self, name: str) -> Path:
        """Return the path of a new store file."""
        return self.directory / f"{name}.db"

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
