"""Reading an export bundle back: its shape, and its events rebuilt as they were recorded.

Every event is rebuilt from its entry exactly as it was stored (payloads re-encoded as
canonical JSON text, times in the form they were hashed in), so the hash chain can be
checked with the same code that verifies stored histories. What a bundle gets wrong is
raised as :class:`Malformed`, with the version it concerns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from flowledger.domain.canonical import canonical_json, encode_payload, json_ready, sha256_hex
from flowledger.domain.event_catalogue import EVENT_CLASSES
from flowledger.domain.events import ConditionEvaluated, ExecutionEvent, ExecutionStarted
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.domain.history import STORE_FIELDS
from flowledger.engine.audit import EXPORT_FORMAT

BUNDLE_KEYS: Mapping[str, type] = {
    "format": str,
    "execution_id": str,
    "workflow_id": str,
    "definition": dict,
    "definition_hash": str,
    "events": list,
    "chain_head": str,
}
"""The keys of a bundle and the JSON type of each."""

ENTRY_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "version": int,
    "type": str,
    "timestamp": str,
    "step_id": (str, type(None)),
    "data": dict,
    "hash": str,
    "prev_hash": str,
}
"""The keys of one event entry of a bundle and the JSON type of each."""

EXECUTION_TOPIC = get_topic(Execution)
"""The aggregate topic every first event records (hashed, but not shown in a history)."""


class Malformed(Exception):
    """One part of a bundle cannot be read; carries the problem's version and reason."""

    def __init__(self, version: int, reason: str) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason


def check_shape(bundle: Any) -> None:
    """Check a bundle's format tag, keys and their JSON types, and that it has events."""
    if not isinstance(bundle, Mapping):
        raise Malformed(0, f"a bundle is a JSON object, not {json_type(bundle)}")
    if bundle.get("format") != EXPORT_FORMAT:
        reason = f"format is {bundle.get('format')!r}, not {EXPORT_FORMAT!r}"
        raise Malformed(0, reason)
    _check_keys(bundle, BUNDLE_KEYS, 0, "the bundle")
    if not bundle["events"]:
        raise Malformed(0, "the bundle holds no events")


def _check_keys(
    document: Mapping[str, Any],
    expected: Mapping[str, type | tuple[type, ...]],
    version: int,
    what: str,
) -> None:
    missing = [key for key in expected if key not in document]
    if missing:
        raise Malformed(version, f"{what} lacks {', '.join(missing)}")
    for key, kind in expected.items():
        value = document[key]
        # JSON has no separate booleans among numbers; Python's bool is an int.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Malformed(version, f"{key} of {what} is {json_type(value)}")


def json_type(value: Any) -> str:
    """Name a value's JSON type, for a problem's reason ("an object", "null", ...)."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return names.get(type(value), f"a {type(value).__name__}")


def aggregate_id_of(bundle: Mapping[str, Any]) -> UUID:
    """The aggregate id the chain hashes: derived from the first event's execution id."""
    first = bundle["events"][0]
    data = first.get("data") if isinstance(first, Mapping) else None
    recorded = data.get("execution_id") if isinstance(data, Mapping) else None
    if not isinstance(recorded, str):
        recorded = bundle["execution_id"]
    return execution_uuid(recorded)


def rebuild_events(
    entries: Sequence[Any], aggregate_id: UUID, problems: list[Malformed]
) -> list[ExecutionEvent]:
    """Rebuild events up to the first malformed entry; report every malformed entry."""
    events: list[ExecutionEvent] = []
    for position, entry in enumerate(entries, start=1):
        try:
            event = _event_of(entry, position, aggregate_id)
        except Malformed as malformed:
            problems.append(malformed)
            continue
        if len(events) == position - 1:
            events.append(event)
    return events


def _event_of(entry: Any, position: int, aggregate_id: UUID) -> ExecutionEvent:
    """Rebuild the event an entry shows, as it was recorded (payloads as JSON text)."""
    if not isinstance(entry, Mapping):
        raise Malformed(position, f"event {position} is {json_type(entry)}, not an object")
    version = entry.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        position = version
    _check_keys(entry, ENTRY_KEYS, position, f"event {position}")
    cls = EVENT_CLASSES.get(entry["type"])
    if cls is None:
        raise Malformed(position, f"event type {entry['type']!r} is not an execution event")
    recorded = _recorded_fields(cls, entry["data"], position)
    if cls is ExecutionStarted:
        recorded["originator_topic"] = EXECUTION_TOPIC
    event = cls(
        originator_id=aggregate_id,
        originator_version=entry["version"],
        timestamp=_moment(entry["timestamp"], position, "timestamp"),
        prev_hash=entry["prev_hash"],
        hash=entry["hash"],
        **recorded,
    )
    for name in _added_later(cls) - set(recorded):
        # As the older event was recorded (and hashed): without the field.
        vars(event).pop(name)
    _check_step_id(event, entry["step_id"], position)
    return event


def _added_later(cls: type[ExecutionEvent]) -> set[str]:
    """Fields of ``cls`` with a default: added after the class was first recorded."""
    return {
        field.name
        for field in fields(cls)
        if field.name not in STORE_FIELDS and field.default is not MISSING
    }


def _recorded_fields(
    cls: type[ExecutionEvent], data: Mapping[str, Any], version: int
) -> dict[str, Any]:
    """The event's own fields as it recorded them, checked to be all there and JSON."""
    # A field added to the class later (it has a default) is absent from older events.
    expected = [
        field
        for field in fields(cls)
        if field.name not in STORE_FIELDS and (field.name in data or field.default is MISSING)
    ]
    names = {field.name for field in expected}
    if set(data) != names:
        missing, extra = sorted(names - set(data)), sorted(set(data) - names)
        reason = f"{cls.__name__} data lacks {missing} and has unknown fields {extra}"
        raise Malformed(version, reason)
    recorded = {
        field.name: _recorded(cls, field.name, field.type, data, version) for field in expected
    }
    try:  # what the chain hashes must be JSON (json.loads accepts NaN, for one)
        canonical_json(json_ready(recorded))
    except (TypeError, ValueError) as error:
        reason = f"{cls.__name__} holds a value JSON cannot hold: {error}"
        raise Malformed(version, reason) from None
    return recorded


def _recorded(
    cls: type[ExecutionEvent], name: str, kind: Any, data: Mapping[str, Any], version: int
) -> Any:
    """One field as the event recorded it: payloads as canonical JSON, times as datetimes."""
    value = data[name]
    if name in cls.PAYLOADS:
        try:
            return encode_payload(value)
        except (TypeError, ValueError) as error:
            raise Malformed(version, f"{name} is not JSON: {error}") from None
    if kind in ("datetime", datetime):
        return _moment(value, version, name)
    return json_ready(value)  # a copy: the event must not share the caller's containers


def _moment(text: Any, version: int, name: str) -> datetime:
    """A time in exactly the ISO 8601 form it was recorded (and hashed) in."""
    if not isinstance(text, str):
        raise Malformed(version, f"{name} is {json_type(text)}, not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(version, f"{name} {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None or moment.isoformat() != text:
        # Another spelling of the same moment would hash alike: only the recorded one is.
        raise Malformed(version, f"{name} {text!r} is not in the form it was recorded in")
    return moment


def _check_step_id(event: ExecutionEvent, shown: str | None, version: int) -> None:
    """The entry's ``step_id`` is derived from the event (so not hashed): check it."""
    expected = event.target if isinstance(event, ConditionEvaluated) else vars(event).get("step_id")
    if shown != expected:
        raise Malformed(version, f"step_id {shown!r} is not the event's step {expected!r}")


def order_problems(events: Sequence[ExecutionEvent]) -> list[Malformed]:
    """An execution starts once, with its first event (a forger can hash anything)."""
    return [
        Malformed(event.originator_version, f"{type(event).__name__} at position {position}")
        for position, event in enumerate(events, start=1)
        if (position == 1) != isinstance(event, ExecutionStarted)
    ]


def summary_problems(bundle: Mapping[str, Any], started: ExecutionStarted) -> list[Malformed]:
    """What the bundle says outside its events must agree with its first event."""
    problems = [
        Malformed(1, f"{key} {bundle[key]!r} is not the recorded {recorded!r}")
        for key, recorded in (
            ("execution_id", started.execution_id),
            ("workflow_id", started.workflow_id),
            ("definition_hash", started.definition_hash),
        )
        if bundle[key] != recorded
    ]
    try:
        text = canonical_json(bundle["definition"])
    except (TypeError, ValueError) as error:
        return [*problems, Malformed(1, f"the definition is not JSON: {error}")]
    if sha256_hex(text) != bundle["definition_hash"]:
        problems.append(Malformed(1, "the definition does not match its hash (it was edited)"))
    elif text != started.definition:
        problems.append(Malformed(1, "the definition is not the one the execution recorded"))
    return problems
