"""Export bundles that travel: verified offline, imported into another store.

A bundle is what ``Ledger.export`` returns, usually sent as JSON. :func:`verify_bundle`
needs no store: it rebuilds every event from the bundle's entries exactly as it was
recorded (payloads re-encoded as canonical JSON text, times in the form they were hashed
in) and checks the hash chain with the same code that verifies stored histories, plus
what the chain does not cover: the definition against its hash, the bundle's summary
fields, each entry's ``step_id``, and the chain head. :func:`import_bundle` stores a
bundle that verifies, event for event, in another ledger.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from flowledger.domain import events as domain_events
from flowledger.domain.canonical import canonical_json, encode_payload, json_ready, sha256_hex
from flowledger.domain.chain import link_of, verify_chain
from flowledger.domain.events import ConditionEvaluated, ExecutionEvent, ExecutionStarted
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.domain.history import STORE_FIELDS
from flowledger.engine.audit import EXPORT_FORMAT, VerifyProblem, VerifyReport
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.record_reading import reading, replay
from flowledger.errors import (
    ChainError,
    ConcurrencyConflictError,
    CorruptRecordError,
    ImportConflictError,
)

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


def _concrete_event_classes() -> dict[str, type[ExecutionEvent]]:
    """Every event class that can be recorded: the leaves of the catalogue, by name."""
    found = {}
    for _, cls in inspect.getmembers(domain_events, inspect.isclass):
        if (
            issubclass(cls, ExecutionEvent)
            and cls.__module__ == domain_events.__name__
            and not any(sub.__module__ == cls.__module__ for sub in cls.__subclasses__())
        ):
            found[cls.__name__] = cls
    return found


EVENT_CLASSES = _concrete_event_classes()
"""Event class by the name a history records (``type``)."""


class _Malformed(Exception):
    """One part of a bundle cannot be read; carries the problem's version and reason."""

    def __init__(self, version: int, reason: str) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason


def verify_bundle(bundle: Any, *, expected_head: str | None = None) -> VerifyReport:
    """Verify an export bundle offline: its hash chain, definition and summary fields.

    A malformed bundle (not an object, wrong ``format``, a missing key, a value of the
    wrong type) is reported as problems, never raised. Problems about the bundle as a
    whole are at version 0; the others at the version of the event concerned.

    Args:
        bundle: The document ``Ledger.export`` returned (or its JSON, parsed).
        expected_head: A chain head recorded elsewhere (for example when the bundle
            was sent): without it, a history cut short *together with* its
            ``chain_head`` verifies, since it is internally consistent.

    Returns:
        The report: ``ok``, how many events were checked, and the problems found.
    """
    return _check(bundle, expected_head)[0]


def import_bundle(app: LedgerApplication, bundle: Any) -> str:
    """Store the history a verified bundle holds in ``app``, exactly as recorded.

    Events keep their versions, timestamps and hashes, so the importing ledger
    verifies, lists and replays the execution with no action registered. Importing a
    bundle whose history is already stored changes nothing.

    Args:
        app: The ledger application to import into.
        bundle: The document ``Ledger.export`` returned (or its JSON, parsed).

    Returns:
        The execution's id.

    Raises:
        ChainError: The bundle does not verify (every problem is listed). Nothing is
            stored.
        ImportConflictError: The store already holds a different history under this
            execution id. Nothing is stored.
        CorruptRecordError: The events verify but do not rebuild an execution, or the
            history already stored under this id cannot be read back.
    """
    report, events = _check(bundle, None)
    if not report.ok:
        listing = "; ".join(f"version {found.version}: {found.reason}" for found in report.problems)
        raise ChainError(report.problems[0].version, f"the bundle does not verify ({listing})")
    started = events[0]
    assert isinstance(started, ExecutionStarted)
    execution_id = started.execution_id
    _check_replay(execution_id, events)
    try:
        app.save_events(events)
    except ConcurrencyConflictError:
        # The store holds events of this execution already (and nothing of this save
        # was stored): importing again is fine, another history is refused.
        _require_same_history(app, execution_id, events)
    return execution_id


def _check_replay(execution_id: str, events: Sequence[ExecutionEvent]) -> None:
    """Replay the events before storing them: a consistent forgery may still be nonsense.

    Replay trusts recorded events (a step it names is in the definition, a field has
    its type), so what it raises on a forged one is turned into a corrupt record at
    the event that caused it.
    """
    execution: Execution | None = None
    with reading(execution_id):
        for event in events:
            try:
                execution = replay(execution, [event])
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                reason = f"it does not replay ({type(error).__name__}: {error})"
                raise CorruptRecordError(execution_id, event.originator_version, reason) from error


def _require_same_history(
    app: LedgerApplication, execution_id: str, events: Sequence[ExecutionEvent]
) -> None:
    """Refuse unless ``app`` holds exactly these events under ``execution_id``."""
    stored = [link_of(event) for event in app.read_events(execution_id)]
    wanted = [link_of(event) for event in events]
    if stored == wanted:
        return
    differs = next(
        (mine.version for mine, theirs in zip(wanted, stored, strict=False) if mine != theirs),
        min(len(stored), len(wanted)) + 1,
    )
    reason = (
        f"the store already holds a different history ({len(stored)} events;"
        f" they differ from version {differs}); nothing was imported"
    )
    raise ImportConflictError(execution_id, differs, reason)


def _check(
    bundle: Any, expected_head: str | None
) -> tuple[VerifyReport, tuple[ExecutionEvent, ...]]:
    """Check a bundle: the report, and the events it holds when it verifies."""
    subject = _subject(bundle)
    try:
        _check_shape(bundle)
    except _Malformed as malformed:
        return _report(subject, 0, [malformed]), ()
    problems: list[_Malformed] = []
    events = _rebuild_events(bundle["events"], _aggregate_id(bundle), problems)
    report = verify_chain(
        (link_of(event) for event in events),
        bundle["chain_head"] if len(events) == len(bundle["events"]) else None,
    )
    if not report.ok:
        assert report.broken_at is not None and report.reason is not None
        problems.append(_Malformed(report.broken_at, report.reason))
    if expected_head is not None and report.ok and report.head != expected_head:
        reason = f"chain head {report.head} is not the expected head {expected_head}"
        problems.append(_Malformed(report.checked, reason))
    problems.extend(_order_problems(events))
    if events and isinstance(events[0], ExecutionStarted):
        problems.extend(_summary_problems(bundle, events[0]))
    problems.sort(key=lambda problem: problem.version)
    checked = report.checked + (1 if len(events) < len(bundle["events"]) else 0)
    return _report(subject, checked, problems), () if problems else tuple(events)


def _report(subject: str, checked: int, problems: Sequence[_Malformed]) -> VerifyReport:
    found = tuple(VerifyProblem(subject, problem.version, problem.reason) for problem in problems)
    return VerifyReport(not found, checked, found, 1)


def _subject(bundle: Any) -> str:
    """The execution a bundle claims to hold, for its problems ('?' when it says none)."""
    if isinstance(bundle, Mapping) and isinstance(bundle.get("execution_id"), str):
        return str(bundle["execution_id"])
    return "?"


def _check_shape(bundle: Any) -> None:
    if not isinstance(bundle, Mapping):
        raise _Malformed(0, f"a bundle is a JSON object, not {_json_type(bundle)}")
    if bundle.get("format") != EXPORT_FORMAT:
        reason = f"format is {bundle.get('format')!r}, not {EXPORT_FORMAT!r}"
        raise _Malformed(0, reason)
    _check_keys(bundle, BUNDLE_KEYS, 0, "the bundle")
    if not bundle["events"]:
        raise _Malformed(0, "the bundle holds no events")


def _check_keys(
    document: Mapping[str, Any],
    expected: Mapping[str, type | tuple[type, ...]],
    version: int,
    what: str,
) -> None:
    missing = [key for key in expected if key not in document]
    if missing:
        raise _Malformed(version, f"{what} lacks {', '.join(missing)}")
    for key, kind in expected.items():
        value = document[key]
        # JSON has no separate booleans among numbers; Python's bool is an int.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _Malformed(version, f"{key} of {what} is {_json_type(value)}")


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return names.get(type(value), f"a {type(value).__name__}")


def _aggregate_id(bundle: Mapping[str, Any]) -> UUID:
    """The aggregate id the chain hashes: derived from the first event's execution id."""
    first = bundle["events"][0]
    data = first.get("data") if isinstance(first, Mapping) else None
    recorded = data.get("execution_id") if isinstance(data, Mapping) else None
    if not isinstance(recorded, str):
        recorded = bundle["execution_id"]
    return execution_uuid(recorded)


def _rebuild_events(
    entries: Sequence[Any], aggregate_id: UUID, problems: list[_Malformed]
) -> list[ExecutionEvent]:
    """Rebuild events up to the first malformed entry; report every malformed entry."""
    events: list[ExecutionEvent] = []
    for position, entry in enumerate(entries, start=1):
        try:
            event = _event_of(entry, position, aggregate_id)
        except _Malformed as malformed:
            problems.append(malformed)
            continue
        if len(events) == position - 1:
            events.append(event)
    return events


def _event_of(entry: Any, position: int, aggregate_id: UUID) -> ExecutionEvent:
    """Rebuild the event an entry shows, as it was recorded (payloads as JSON text)."""
    if not isinstance(entry, Mapping):
        raise _Malformed(position, f"event {position} is {_json_type(entry)}, not an object")
    version = entry.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        position = version
    _check_keys(entry, ENTRY_KEYS, position, f"event {position}")
    cls = EVENT_CLASSES.get(entry["type"])
    if cls is None:
        raise _Malformed(position, f"event type {entry['type']!r} is not an execution event")
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
    _check_step_id(event, entry["step_id"], position)
    return event


def _recorded_fields(
    cls: type[ExecutionEvent], data: Mapping[str, Any], version: int
) -> dict[str, Any]:
    """The event's own fields as it recorded them, checked to be all there and JSON."""
    expected = [field for field in fields(cls) if field.name not in STORE_FIELDS]
    names = {field.name for field in expected}
    if set(data) != names:
        missing, extra = sorted(names - set(data)), sorted(set(data) - names)
        reason = f"{cls.__name__} data lacks {missing} and has unknown fields {extra}"
        raise _Malformed(version, reason)
    recorded = {
        field.name: _recorded(cls, field.name, field.type, data, version) for field in expected
    }
    try:  # what the chain hashes must be JSON (json.loads accepts NaN, for one)
        canonical_json(json_ready(recorded))
    except (TypeError, ValueError) as error:
        reason = f"{cls.__name__} holds a value JSON cannot hold: {error}"
        raise _Malformed(version, reason) from None
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
            raise _Malformed(version, f"{name} is not JSON: {error}") from None
    if kind in ("datetime", datetime):
        return _moment(value, version, name)
    return json_ready(value)  # a copy: the event must not share the caller's containers


def _moment(text: Any, version: int, name: str) -> datetime:
    """A time in exactly the ISO 8601 form it was recorded (and hashed) in."""
    if not isinstance(text, str):
        raise _Malformed(version, f"{name} is {_json_type(text)}, not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Malformed(version, f"{name} {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None or moment.isoformat() != text:
        # Another spelling of the same moment would hash alike: only the recorded one is.
        raise _Malformed(version, f"{name} {text!r} is not in the form it was recorded in")
    return moment


def _check_step_id(event: ExecutionEvent, shown: str | None, version: int) -> None:
    """The entry's ``step_id`` is derived from the event (so not hashed): check it."""
    expected = event.target if isinstance(event, ConditionEvaluated) else vars(event).get("step_id")
    if shown != expected:
        raise _Malformed(version, f"step_id {shown!r} is not the event's step {expected!r}")


def _order_problems(events: Sequence[ExecutionEvent]) -> list[_Malformed]:
    """An execution starts once, with its first event (a forger can hash anything)."""
    return [
        _Malformed(event.originator_version, f"{type(event).__name__} at position {position}")
        for position, event in enumerate(events, start=1)
        if (position == 1) != isinstance(event, ExecutionStarted)
    ]


def _summary_problems(bundle: Mapping[str, Any], started: ExecutionStarted) -> list[_Malformed]:
    """What the bundle says outside its events must agree with its first event."""
    problems = [
        _Malformed(1, f"{key} {bundle[key]!r} is not the recorded {recorded!r}")
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
        return [*problems, _Malformed(1, f"the definition is not JSON: {error}")]
    if sha256_hex(text) != bundle["definition_hash"]:
        problems.append(_Malformed(1, "the definition does not match its hash (it was edited)"))
    elif text != started.definition:
        problems.append(_Malformed(1, "the definition is not the one the execution recorded"))
    return problems
