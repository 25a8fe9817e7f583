"""Short texts of recorded events, errors and durations, for people.

Events are described by the audit timeline (:mod:`flowledger.projections.timeline`),
so the live progress of ``run`` and the summaries of ``history`` read the same as
every other audit view.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowledger.domain.state import HistoryEntry
from flowledger.engine.notifications import Notification
from flowledger.projections import timeline


def clock_time(moment: datetime) -> str:
    """Return a moment as ``HH:MM:SS.mmm`` in its own time zone."""
    return moment.isoformat(timespec="milliseconds")[11:23]


def format_duration(duration_ms: float | None) -> str:
    """Return a duration in milliseconds as text (empty when unknown)."""
    return "" if duration_ms is None else timeline.format_duration(duration_ms)


def error_text(error: Mapping[str, Any] | None) -> str:
    """Return recorded error data as ``Type: message`` (empty when there is none)."""
    if not error:
        return ""
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def progress_line(note: Notification) -> str:
    """Return the live-progress line of a notification: its time, then what happened."""
    entry = HistoryEntry(
        version=note.version,
        type=note.type,
        timestamp=note.timestamp,
        step_id=note.step_id,
        data=note.data,
        execution_id=note.execution_id,
    )
    return f"{clock_time(note.timestamp)}  {timeline.describe(entry)}"
