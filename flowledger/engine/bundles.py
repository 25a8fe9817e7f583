"""Export bundles that travel: verified offline, imported into another store.

A bundle is what ``Ledger.export`` returns, usually sent as JSON. :func:`verify_bundle`
needs no store: it rebuilds every event from the bundle's entries exactly as it was
recorded (payloads re-encoded as canonical JSON text, times in the form they were hashed
in) and checks the hash chain with the same code that verifies stored histories, plus
what the chain does not cover: the definition against its hash, the bundle's summary
fields, each entry's ``step_id``, and the chain head. :func:`import_bundle` stores a
bundle that verifies, event for event, in another ledger. Reading the bundle's events
back is :mod:`flowledger.engine.bundle_events`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowledger.domain.chain import link_of, verify_chain
from flowledger.domain.events import ExecutionEvent, ExecutionStarted
from flowledger.domain.execution import Execution
from flowledger.engine.audit import VerifyProblem, VerifyReport
from flowledger.engine.bundle_events import (
    Malformed,
    aggregate_id_of,
    check_shape,
    order_problems,
    rebuild_events,
    summary_problems,
)
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.record_reading import reading, replay
from flowledger.errors import (
    ChainError,
    ConcurrencyConflictError,
    CorruptRecordError,
    ImportConflictError,
)


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
        check_shape(bundle)
    except Malformed as malformed:
        return _report(subject, 0, [malformed]), ()
    problems: list[Malformed] = []
    events = rebuild_events(bundle["events"], aggregate_id_of(bundle), problems)
    report = verify_chain(
        (link_of(event) for event in events),
        bundle["chain_head"] if len(events) == len(bundle["events"]) else None,
    )
    if not report.ok:
        assert report.broken_at is not None and report.reason is not None
        problems.append(Malformed(report.broken_at, report.reason))
    if expected_head is not None and report.ok and report.head != expected_head:
        reason = f"chain head {report.head} is not the expected head {expected_head}"
        problems.append(Malformed(report.checked, reason))
    problems.extend(order_problems(events))
    if events and isinstance(events[0], ExecutionStarted):
        problems.extend(summary_problems(bundle, events[0]))
    problems.sort(key=lambda problem: problem.version)
    checked = report.checked + (1 if len(events) < len(bundle["events"]) else 0)
    return _report(subject, checked, problems), () if problems else tuple(events)


def _report(subject: str, checked: int, problems: Sequence[Malformed]) -> VerifyReport:
    found = tuple(VerifyProblem(subject, problem.version, problem.reason) for problem in problems)
    return VerifyReport(not found, checked, found, 1)


def _subject(bundle: Any) -> str:
    """The execution a bundle claims to hold, for its problems ('?' when it says none)."""
    if isinstance(bundle, Mapping) and isinstance(bundle.get("execution_id"), str):
        return str(bundle["execution_id"])
    return "?"
