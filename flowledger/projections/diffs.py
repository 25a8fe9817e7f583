"""Structured differences between execution states.

:func:`diff_states` compares two moments of one execution (for example
``Ledger.get(id, version=3)`` and ``Ledger.get(id)``); :func:`compare_executions`
compares two executions of one workflow, step by step, aligned by step id. Both
return an :class:`ExecutionDiff`: values for programs (``to_dict``) and sentences for
people (``lines``).

Values are compared as JSON values, so ``1``, ``1.0`` and ``true`` differ, as they do
in the recorded history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from flowledger.domain.canonical import canonical_json, json_ready
from flowledger.domain.state import ExecutionState, StepState
from flowledger.projections.timeline import brief, format_duration

EXECUTION_FIELDS = ("status", "error", "paused_on", "outputs", "input", "cancel_requested")
"""Execution-level fields a diff compares."""

STEP_FIELDS = ("status", "attempts", "output", "error", "duration_ms", "reason")
"""Step fields a diff compares (times differ between any two runs, durations say more)."""

Presence = Literal["both", "before", "after"]
"""Where a step is found: on both sides, or only before (left) or only after (right)."""


@dataclass(frozen=True)
class Change:
    """One field that differs.

    Attributes:
        field: The field's name, for example ``status`` or ``duration_ms``.
        before: Its value on the left (earlier, or first execution).
        after: Its value on the right.
        delta_ms: For ``duration_ms``, ``after - before`` when both are known.
    """

    field: str
    before: Any
    after: Any
    delta_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the change as a JSON-ready dict."""
        found = {"field": self.field, "before": _plain(self.before), "after": _plain(self.after)}
        if self.field == "duration_ms":
            found["delta_ms"] = self.delta_ms
        return found

    def describe(self) -> str:
        """Return the change in words, on one line."""
        if self.field != "duration_ms":
            return f"{self.field}: {_shown(self.before)} -> {_shown(self.after)}"
        text = f"duration: {_duration(self.before)} -> {_duration(self.after)}"
        if self.delta_ms is not None:
            sign = "+" if self.delta_ms >= 0 else "-"
            text += f" ({sign}{format_duration(abs(self.delta_ms))})"
        return text


@dataclass(frozen=True)
class StepDiff:
    """How one step differs.

    Attributes:
        step_id: The step.
        presence: ``both``, or the only side that has the step.
        changes: The fields that differ (for a step on one side only: its status).
    """

    step_id: str
    presence: Presence
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the step's differences as a JSON-ready dict."""
        return {
            "step_id": self.step_id,
            "presence": self.presence,
            "changes": [change.to_dict() for change in self.changes],
        }

    def lines(self) -> list[str]:
        """Return the step's differences in words, one line each."""
        name = f"step {brief(self.step_id, 40)}"
        if self.presence != "both":
            status = self.changes[0].before if self.presence == "before" else self.changes[0].after
            return [f"{name}: only {self.presence} ({_shown(status)})"]
        return [f"{name}: {change.describe()}" for change in self.changes]


@dataclass(frozen=True)
class ExecutionDiff:
    """The differences between two execution states.

    Attributes:
        before_id: The left execution.
        after_id: The right execution (the same as ``before_id`` for two moments).
        before_version: How many events the left state is built from.
        after_version: How many events the right state is built from.
        changes: Execution-level fields that differ.
        step_changes: Steps that differ, in definition order (left's steps first).
        notes: What the reader should know to interpret the diff (definitions differ).
    """

    before_id: str
    after_id: str
    before_version: int
    after_version: int
    changes: tuple[Change, ...] = ()
    step_changes: tuple[StepDiff, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when nothing differs and there is nothing to note."""
        return not (self.changes or self.step_changes or self.notes)

    def to_dict(self) -> dict[str, Any]:
        """Return the diff as a JSON-ready dict."""
        return {
            "before": {"execution_id": self.before_id, "version": self.before_version},
            "after": {"execution_id": self.after_id, "version": self.after_version},
            "changes": [change.to_dict() for change in self.changes],
            "step_changes": [step.to_dict() for step in self.step_changes],
            "notes": list(self.notes),
            "is_empty": self.is_empty,
        }

    def lines(self) -> list[str]:
        """Return the diff in words: notes, execution changes, then step changes."""
        found = [f"note: {note}" for note in self.notes]
        found += [f"execution {change.describe()}" for change in self.changes]
        for step in self.step_changes:
            found += step.lines()
        return found or ["no differences"]


def diff_states(before: ExecutionState, after: ExecutionState) -> ExecutionDiff:
    """Return how one execution changed between two moments.

    Args:
        before: The earlier state (for example ``Ledger.get(id, version=n)``).
        after: The later state.

    Raises:
        ValueError: The states are of different executions (use
            :func:`compare_executions`).
    """
    if before.execution_id != after.execution_id:
        msg = (
            f"states of different executions ({before.execution_id!r} and"
            f" {after.execution_id!r}): compare them with compare_executions"
        )
        raise ValueError(msg)
    return _diff(before, after, ())


def compare_executions(a: ExecutionState, b: ExecutionState) -> ExecutionDiff:
    """Return how two executions of one workflow differ, step by step.

    Steps are aligned by step id; a step that only one definition has is reported as
    present on that side only. When the two ran different definitions (their hashes
    differ) the diff says so in a note.

    Args:
        a: The first execution (the left, "before" side).
        b: The second execution.

    Raises:
        ValueError: The executions run different workflows.
    """
    if a.workflow_id != b.workflow_id:
        msg = (
            f"executions {a.execution_id!r} and {b.execution_id!r} run different workflows"
            f" ({a.workflow_id!r} and {b.workflow_id!r}); only runs of one workflow compare"
        )
        raise ValueError(msg)
    notes: tuple[str, ...] = ()
    if a.definition_hash != b.definition_hash:
        notes = (
            f"the executions ran different definitions of workflow {a.workflow_id!r}"
            f" ({a.definition_hash[:12]} and {b.definition_hash[:12]})",
        )
    return _diff(a, b, notes)


def _diff(before: ExecutionState, after: ExecutionState, notes: tuple[str, ...]) -> ExecutionDiff:
    return ExecutionDiff(
        before_id=before.execution_id,
        after_id=after.execution_id,
        before_version=before.version,
        after_version=after.version,
        changes=tuple(_changes(before, after, EXECUTION_FIELDS)),
        step_changes=tuple(_step_diffs(before.steps, after.steps)),
        notes=notes,
    )


def _step_diffs(before: dict[str, StepState], after: dict[str, StepState]) -> Iterable[StepDiff]:
    for step_id in [*before, *(step_id for step_id in after if step_id not in before)]:
        left, right = before.get(step_id), after.get(step_id)
        if right is None:
            assert left is not None
            yield StepDiff(step_id, "before", (Change("status", left.status, None),))
        elif left is None:
            yield StepDiff(step_id, "after", (Change("status", None, right.status),))
        else:
            changes = tuple(_changes(left, right, STEP_FIELDS))
            if changes:
                yield StepDiff(step_id, "both", changes)


def _changes(before: object, after: object, names: Iterable[str]) -> Iterable[Change]:
    for name in names:
        left, right = getattr(before, name), getattr(after, name)
        if _same(left, right):
            continue
        delta = None
        if name == "duration_ms" and left is not None and right is not None:
            delta = right - left
        yield Change(name, left, right, delta)


def _same(left: Any, right: Any) -> bool:
    """Compare as JSON values: ``1 == 1.0 == True`` in Python, not in a history."""
    try:
        return canonical_json(_plain(left)) == canonical_json(_plain(right))
    except (TypeError, ValueError):  # not JSON after all (NaN): equality is the best guess
        return bool(left == right)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return json_ready(value)


def _shown(value: Any) -> str:
    return brief(_plain(value), 60)


def _duration(value: float | None) -> str:
    return "none" if value is None else format_duration(value)
