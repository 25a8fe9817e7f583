"""The audit timeline: one short, human-readable line per recorded event.

Each line says what happened, to which step, who asked for it and why, which branch a
condition chose, how long an attempt took and what it raised. Values are shown briefly
(key names of inputs and parameters, truncated messages), so a line stays one line;
the history itself keeps every value in full.

The text forms of values (:func:`one_line`, :func:`brief`, :func:`format_duration`)
are shared with the other read models that describe executions in words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowledger.domain.canonical import canonical_json
from flowledger.domain.sealing import is_sealed
from flowledger.domain.state import HistoryEntry

MAX_TEXT = 80
"""Longest rendering of one value (an error message, a condition, an id) in a line."""

MAX_KEYS = 5
"""How many key names of an input or parameters are listed before "+N more"."""

_SPACE = re.compile(r"\s+")


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    """Return ``text`` on one line (white space runs become one space), cut to ``limit``.

    A cut text ends with an ellipsis, so a reader knows there is more in the history.
    """
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    return flat[: max(limit - 1, 0)] + "…"


def brief(value: Any, limit: int = MAX_TEXT) -> str:
    """Return a short, one-line rendering of a value: text as is, anything else as JSON."""
    if isinstance(value, str):
        return one_line(value, limit)
    try:
        text = canonical_json(value)
    except (TypeError, ValueError):  # not JSON (NaN, a datetime): still show something
        text = repr(value)
    return one_line(text, limit)


def format_duration(milliseconds: float) -> str:
    """Return a duration for people: ``0.42 ms``, ``37 ms``, ``2.50 s``."""
    if abs(milliseconds) >= 1000:
        return f"{milliseconds / 1000:.2f} s"
    if abs(milliseconds) >= 10:
        return f"{milliseconds:.0f} ms"
    return f"{milliseconds:.2f} ms"


@dataclass(frozen=True)
class TimelineLine:
    """One event of an execution's history, described in one line.

    Attributes:
        version: The event's position in the history.
        timestamp: When it happened.
        type: The event's name, for example ``StepFailed``.
        step_id: The step it concerns, or None.
        text: What happened, in words (no line breaks).
        actor: Who asked for it (cancel, pause, resume, input, retry, skip), where
            recorded.
        reason: Why, where recorded (a cancel's or pause's reason, a skip's).
        intervention: True for an operator's action: a cancel, an explicit pause, a
            resume, input provided, a retry or a skip.
    """

    version: int
    timestamp: datetime
    type: str
    step_id: str | None
    text: str
    actor: str | None = None
    reason: str | None = None
    intervention: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the line as a JSON-ready dict (the timestamp in ISO 8601)."""
        return {
            "version": self.version,
            "timestamp": self.timestamp.isoformat(),
            "type": self.type,
            "step_id": self.step_id,
            "text": self.text,
            "actor": self.actor,
            "reason": self.reason,
            "intervention": self.intervention,
        }

    def __str__(self) -> str:
        return (
            f"{self.version:>4}  {self.timestamp.isoformat(timespec='milliseconds')}  {self.text}"
        )


def audit_timeline(entries: Sequence[HistoryEntry]) -> list[TimelineLine]:
    """Return the audit timeline of a history: one line per entry, in the same order.

    Args:
        entries: An execution's history (for example ``Ledger.history(id)``).
    """
    return [timeline_line(entry) for entry in entries]


def timeline_line(entry: HistoryEntry) -> TimelineLine:
    """Return the timeline line of one history entry."""
    actor = entry.data.get("actor")
    reason = entry.data.get("reason")
    return TimelineLine(
        version=entry.version,
        timestamp=entry.timestamp,
        type=entry.type,
        step_id=entry.step_id,
        text=describe(entry),
        actor=None if actor is None else str(actor),
        reason=None if reason is None else str(reason),
        intervention=is_intervention(entry),
    )


INTERVENTIONS = frozenset(
    {
        "CancelRequested",
        "ExecutionResumed",
        "InputProvided",
        "ExecutionRetried",
        "StepSkippedByOperator",
        "SubjectForgotten",
        "LegalHoldPlaced",
        "LegalHoldReleased",
        "ExecutionPurged",
    }
)
"""Events that only an operator's action records (an explicit pause is one too)."""


def is_intervention(entry: HistoryEntry) -> bool:
    """True when an operator's action recorded ``entry`` (not the engine's own work)."""
    if entry.type == "ExecutionPaused":
        # A pause for a missing input names the step and the value it waits for.
        return entry.data.get("missing_var") is None
    return entry.type in INTERVENTIONS


def describe(entry: HistoryEntry) -> str:
    """Return what one history entry records, in words, on one line.

    An event type this version does not know (recorded by a newer one) is still
    described, generically, by its name and field names.
    """
    describer = _DESCRIBERS.get(entry.type)
    if describer is None:
        return one_line(f"{entry.type} (unrecognised event): {_keys(entry.data)}", 2 * MAX_TEXT)
    return describer(_Fields(entry.data))


class _Fields:
    """An entry's data, read leniently: a bundle from elsewhere may lack a field."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def get(self, name: str) -> Any:
        return self._data.get(name)

    def text(self, name: str, limit: int = MAX_TEXT) -> str:
        return brief(self._data.get(name), limit)

    def step(self) -> str:
        return f"step {brief(self._data.get('step_id'), 40)}"

    def by(self) -> str:
        actor = self._data.get("actor")
        return "" if actor is None else f" by {brief(actor, 40)}"

    def because(self) -> str:
        reason = self._data.get("reason")
        return "" if reason in (None, "") else f": {brief(reason)}"

    def error(self) -> str:
        return _error(self._data.get("error"))

    def duration(self) -> str:
        value = self._data.get("duration_ms")
        return format_duration(value) if isinstance(value, int | float) else "unknown time"


def _keys(value: Any) -> str:
    """Name a mapping's keys (never its values: they may be secrets, or long)."""
    if is_sealed(value):
        return "sealed"
    if not isinstance(value, Mapping):
        return brief(value, 40)
    if not value:
        return "none"
    names = [brief(key, 30) for key in value]
    shown = ", ".join(names[:MAX_KEYS])
    hidden = len(names) - MAX_KEYS
    return f"{shown} +{hidden} more" if hidden > 0 else shown


def _error(error: Any) -> str:
    if not isinstance(error, Mapping):
        return brief(error)
    kind = brief(error.get("type", "error"), 40)
    return f"{kind}: {brief(error.get('message', ''))}"


def _moment(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return brief(value, 40)


def _started(f: _Fields) -> str:
    definition = f.text("definition_hash")[:12]
    return (
        f"execution {f.text('execution_id', 40)} of workflow {f.text('workflow_id', 40)}"
        f" started (definition {definition}; input: {_keys(f.get('input'))})"
    )


def _paused(f: _Fields) -> str:
    where = "" if f.get("step_id") is None else f" at {f.step()}"
    missing = f.get("missing_var")
    waiting = "" if missing is None else f", waiting for {brief(missing, 60)}"
    return f"execution paused{where}{f.by()}{waiting}{f.because()}"


def _cancel_requested(f: _Fields) -> str:
    rollback = " with rollback" if f.get("rollback") else ""
    return f"cancel requested{rollback}{f.by()}{f.because()}"


def _rollback_started(f: _Fields) -> str:
    cause = "" if f.get("step_id") is None else f" after {f.step()} failed"
    error = "" if f.get("error") is None else f" ({f.error()})"
    return f"rollback started{cause}{error}{f.because()}"


def _failed(what: str) -> Callable[[_Fields], str]:
    def describe_failure(f: _Fields) -> str:
        where = "" if f.get("step_id") is None else f" at {f.step()}"
        return f"{what}{where}: {f.error()}"

    return describe_failure


def _condition(f: _Fields) -> str:
    source, target = f.get("source"), brief(f.get("target"), 40)
    edge = f"guard of step {target}" if source is None else f"{brief(source, 40)} -> {target}"
    expression = f.get("condition")
    if expression is None:
        return f"{edge}: unconditional, branch taken"
    taken = "taken" if f.get("value") else "not taken"
    value = "true" if f.get("value") else "false"
    return f"{edge}: condition `{brief(expression, 60)}` was {value}, branch {taken}"


def _claimed(f: _Fields) -> str:
    previous = f.get("previous_worker")
    after = "" if previous is None else f" (after {brief(previous, 60)} stopped)"
    return f"claimed by worker {f.text('worker', 60)}{after}"


def _step_failed(f: _Fields) -> str:
    retry = "retryable" if f.get("retryable") else "not retryable"
    return (
        f"{f.step()} attempt {f.text('attempt', 10)} failed after {f.duration()}:"
        f" {f.error()} ({retry})"
    )


def _step_timed_out(f: _Fields) -> str:
    timeout = f.get("timeout")
    limit = f"{timeout:g} s" if isinstance(timeout, int | float) else brief(timeout, 20)
    return f"{f.step()} attempt {f.text('attempt', 10)} timed out after {limit}"


def _retried(f: _Fields) -> str:
    step_ids = f.get("step_ids")
    named = ", ".join(brief(step_id, 40) for step_id in step_ids) if step_ids else "none"
    return f"execution retried from its failure{f.by()}{f.because()} (steps run again: {named})"


def _keys_assigned(f: _Fields) -> str:
    sealed = []
    if f.get("subject_key"):
        sealed.append(f"personal data with the data subject's key {f.text('subject_key', 50)}")
    if f.get("execution_key"):
        sealed.append("every payload with the execution's own key (retention)")
    return "payloads sealed: " + ("; ".join(sealed) or "none")


def _skipped_by_operator(f: _Fields) -> str:
    output = f.get("output")
    given = "" if output is None else f" (output given: {_keys(output)})"
    return f"{f.step()} skipped{f.by()}{f.because()}{given}; the steps after it run"


def _step_rolled_back(f: _Fields) -> str:
    return f"{f.step()} rolled back (compensation returned {brief(f.get('output'), 40)})"


_DESCRIBERS: dict[str, Callable[[_Fields], str]] = {
    "ExecutionStarted": _started,
    "InputProvided": lambda f: f"input provided{f.by()}: {_keys(f.get('inputs'))}",
    "ExecutionPaused": _paused,
    "ExecutionResumed": lambda f: f"execution resumed{f.by()}{f.because()}",
    "ExecutionRetried": _retried,
    "CancelRequested": _cancel_requested,
    "ExecutionCancelled": lambda f: "execution cancelled",
    "RollbackStarted": _rollback_started,
    "ExecutionRolledBack": lambda f: "execution rolled back: every compensation finished",
    "RollbackFailed": _failed("rollback failed"),
    "ExecutionCompleted": lambda f: f"execution completed (outputs of: {_keys(f.get('outputs'))})",
    "ExecutionFailed": _failed("execution failed"),
    "ConditionEvaluated": _condition,
    "ExecutionClaimed": _claimed,
    "ExecutionTakenOver": lambda f: (
        f"worker {f.text('worker', 60)} took over from {f.text('previous_worker', 60)},"
        " whose lease expired"
    ),
    "ExecutionReleased": lambda f: f"worker {f.text('worker', 60)} handed it back{f.because()}",
    "StepStarted": lambda f: (
        f"{f.step()} attempt {f.text('attempt', 10)} started"
        f" (parameters: {_keys(f.get('parameters'))})"
    ),
    "StepCompleted": lambda f: (
        f"{f.step()} attempt {f.text('attempt', 10)} completed in {f.duration()}"
    ),
    "StepFailed": _step_failed,
    "StepRetryScheduled": lambda f: (
        f"{f.step()} attempt {f.text('next_attempt', 10)} scheduled"
        f" not before {_moment(f.get('not_before'))}"
    ),
    "StepTimedOut": _step_timed_out,
    "StepSkipped": lambda f: f"{f.step()} skipped{f.because()}",
    "StepSkippedByOperator": _skipped_by_operator,
    "PayloadKeysAssigned": _keys_assigned,
    "SubjectForgotten": lambda f: (
        f"personal data of the data subject erased (key {f.text('subject_key', 50)}"
        f" destroyed){f.by()}{f.because()}"
    ),
    "LegalHoldPlaced": lambda f: f"legal hold placed{f.by()}{f.because()}",
    "LegalHoldReleased": lambda f: f"legal hold released{f.by()}{f.because()}",
    "ExecutionPurged": lambda f: (
        f"payloads purged after retention (key destroyed){f.by()}{f.because()}"
    ),
    "StepPaused": lambda f: f"{f.step()} paused, waiting for {f.text('missing_var', 60)}",
    "StepInterrupted": lambda f: (
        f"{f.step()} attempt {f.text('attempt', 10)} interrupted (found running after a"
        " restart), to run again"
    ),
    "StepCancelled": lambda f: f"{f.step()} cancelled{f.because()}",
    "CompensationStarted": lambda f: f"{f.step()} compensation started",
    "StepRolledBack": _step_rolled_back,
    "CompensationFailed": lambda f: f"{f.step()} compensation failed: {f.error()}",
}

DESCRIBED_TYPES = frozenset(_DESCRIBERS)
"""The event types the timeline describes specifically (any other gets a generic line)."""
