"""Recorded events as an auditor reads them (:class:`~flowledger.domain.state.HistoryEntry`)."""

from __future__ import annotations

from typing import Any

from flowledger.domain.canonical import decode_payload
from flowledger.domain.events import ConditionEvaluated, ExecutionEvent
from flowledger.domain.state import HistoryEntry

STORE_FIELDS = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "hash", "prev_hash"}
)
"""Fields the store and the chain need, shown apart from (or not in) ``data``."""


def history_entry(event: ExecutionEvent, execution_id: str = "") -> HistoryEntry:
    """Return one recorded event of the execution ``execution_id`` as a history entry.

    ``data`` holds the event's own fields, with JSON-text payloads decoded back to
    values. ``step_id`` is the step the event concerns: its ``step_id`` field, or the
    guarded step (``target``) of a ``ConditionEvaluated``.
    """
    data: dict[str, Any] = {}
    for name, value in vars(event).items():
        if name in STORE_FIELDS:
            continue
        data[name] = decode_payload(value) if name in event.PAYLOADS else value
    if isinstance(event, ConditionEvaluated):
        step_id: str | None = event.target
    else:
        step_id = data.get("step_id")
    return HistoryEntry(
        version=event.originator_version,
        type=type(event).__name__,
        timestamp=event.timestamp,
        step_id=step_id,
        data=data,
        hash=event.hash,
        prev_hash=event.prev_hash,
        execution_id=execution_id,
    )
