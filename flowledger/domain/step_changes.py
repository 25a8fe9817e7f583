"""Which step records of an execution aggregate changed, followed outside the aggregate.

A reader that derives values from an execution's steps (the planner) should not read
every step after every event: it reads them all once, then only those whose record
changed since. The events' ``apply`` notes each change of a step record here, for the
aggregate objects someone follows; :meth:`ExecutionRecord.steps_changed_since
<flowledger.domain.execution_state.ExecutionRecord.steps_changed_since>` reads it.

The notes are kept outside the aggregate, keyed by the object and dropped with it, so
snapshots, equality and replay never see them: an object loaded from a snapshot, a
copy, or a reloaded aggregate is simply not followed yet, and its reader reads every
step once.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import itemgetter

from eventsourcing.domain import Aggregate

from flowledger.domain.side_tables import SideTable

__all__ = ["note_step_change", "step_changes_since"]


class _Changes:
    """The (version, step id) of every change of a step record after version ``since``."""

    __slots__ = ("log", "since")

    def __init__(self, since: int) -> None:
        self.since = since
        self.log: list[tuple[int, str]] = []


_FOLLOWED: SideTable[_Changes] = SideTable()
_VERSION = itemgetter(0)


def note_step_change(aggregate: Aggregate, step_id: str, version: int) -> None:
    """Note that the record of ``step_id`` changed at ``version``, if ``aggregate`` is followed."""
    changes = _FOLLOWED.get(aggregate)
    if changes is not None:
        changes.log.append((version, step_id))


def step_changes_since(aggregate: Aggregate, version: int) -> list[str] | None:
    """Return the ids of the steps of ``aggregate`` whose record changed after ``version``.

    The first call on an object starts following it and returns None; so does a call
    with a version the object never had, or one older than an earlier call's (the notes
    before that are dropped). None means: read every step.
    """
    changes = _FOLLOWED.get(aggregate)
    if changes is None:
        _FOLLOWED.setdefault(aggregate, _Changes(aggregate.version))
        return None
    if not changes.since <= version <= aggregate.version:
        return None
    log = changes.log
    del log[: bisect_right(log, version, key=_VERSION)]
    changes.since = version
    return [step_id for _, step_id in log]
