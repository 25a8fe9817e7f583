"""Stored records read back as execution events, and the errors when they cannot be.

The one place that decodes what the store holds: a record is checked to name an
execution event before the mapper builds it, and the event is checked to be whole; a
record that does not rebuild an execution is a :class:`CorruptRecordError`, not one of
the library's errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import CanMutateProtocol, OriginatorIDError, OriginatorVersionError
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import TopicError, resolve_topic

from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution
from flowledger.errors import CorruptRecordError, ExecutionNotFoundError

__all__ = ["decode_record", "reading", "replay"]


def replay(
    aggregate: Execution | None, events: Iterable[CanMutateProtocol[Execution]]
) -> Execution | None:
    """Apply each event (or snapshot) in turn to ``aggregate``.

    What eventsourcing's ``project_aggregate`` does, without its ``isinstance`` check
    against a runtime protocol, which costs half the replay time on Python 3.11.
    """
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


_UNREADABLE = (MapperDeserialisationError, TopicError, OriginatorVersionError, OriginatorIDError)
"""What the library raises when stored records do not rebuild an execution."""


@contextmanager
def reading(execution_id: str) -> Iterator[None]:
    """Turn the library's errors while rebuilding an execution into flowledger's."""
    try:
        yield
    except AggregateNotFoundError as error:
        raise ExecutionNotFoundError(execution_id) from error
    except _UNREADABLE as error:
        raise CorruptRecordError(execution_id, None, str(error)) from error


def decode_record(
    mapper: Mapper[UUID], record: StoredEvent, execution_id: str | None = None
) -> ExecutionEvent:
    """Return the execution event a stored record holds, checked to be whole.

    Args:
        mapper: The application's mapper.
        record: A stored record.
        execution_id: The execution's id, for the error (default: the aggregate id).

    Raises:
        CorruptRecordError: The record cannot be decoded, is not an execution event,
            or lacks a field or has one of the wrong type.
    """
    subject = execution_id or str(record.originator_id)
    try:
        # Checked before decoding: the mapper would build any class a topic names.
        event_class = resolve_topic(record.topic)
        if not (isinstance(event_class, type) and issubclass(event_class, ExecutionEvent)):
            reason = f"topic {record.topic!r} is not an execution event"
            raise CorruptRecordError(subject, record.originator_version, reason)
        event = mapper.to_domain_event(record)
    except (MapperDeserialisationError, TopicError) as error:
        raise CorruptRecordError(subject, record.originator_version, str(error)) from error
    assert isinstance(event, ExecutionEvent)
    problem = _malformation(event)
    if problem is not None:
        raise CorruptRecordError(subject, record.originator_version, problem)
    return event


def _malformation(event: ExecutionEvent) -> str | None:
    """Say what makes a decoded event unusable, or return None if nothing does."""
    recorded = vars(event)
    # A field added to an event class later has a default: older records lack it.
    missing = [
        field.name
        for field in fields(event)
        if field.name not in recorded and field.default is MISSING
    ]
    if missing:
        return f"{type(event).__name__} lacks {', '.join(missing)}"
    expected = {"timestamp": datetime, "hash": str, "prev_hash": str}
    for name, kind in expected.items():
        if not isinstance(recorded[name], kind):
            return f"{name} of {type(event).__name__} is not a {kind.__name__}"
    return None
