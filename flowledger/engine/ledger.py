"""The public ``Ledger``: the synchronous read side and audit of recorded executions.

It reads what the engine recorded: an execution's state now, right after any event, or
as of any moment; its history; lists of executions and step metrics (from read models,
:mod:`flowledger.engine.views`); and it verifies and exports stored histories. It can
open a store of its own or share the engine's application (the only way to read a
``memory://`` store, which lives inside one application).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from flowledger.domain.execution_state import aware
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.audit import VerifyReport, export_execution, history_of, verify_histories
from flowledger.engine.bundles import import_bundle
from flowledger.engine.ledger_app import DEFAULT_SNAPSHOT_INTERVAL, LedgerApplication
from flowledger.engine.ledger_compliance import LedgerCompliance
from flowledger.engine.payload_guards import opened_history, redactions, seals_payloads
from flowledger.engine.stores import StoreConfig
from flowledger.engine.views import LedgerViews, scan_executions
from flowledger.errors import VersionNotFoundError
from flowledger.projections.diffs import ExecutionDiff, compare_executions, diff_states
from flowledger.projections.execution_index import ExecutionQuery
from flowledger.projections.step_metrics import StepMetrics
from flowledger.projections.timeline import TimelineLine, audit_timeline

if TYPE_CHECKING:
    from flowledger.engine.what_if import DefinitionSource, WhatIfReport

Moment = int | datetime
"""A moment of an execution: an event version, or a timezone-aware time."""

DEFAULT_LIST_LIMIT = 100
"""How many executions :meth:`Ledger.list` returns unless told otherwise."""


class Ledger(LedgerCompliance):
    """Read recorded executions, verify and export their histories.

    Args:
        store: A store URL (or parsed :class:`~flowledger.engine.stores.StoreConfig`);
            None for the default (``FLOWLEDGER_STORE``, else ``sqlite:///flowledger.db``).
        snapshot_interval: Events between snapshots, for the application this ledger
            opens (0 or None: none).
        application: An open :class:`~flowledger.engine.ledger_app.LedgerApplication`
            to read through instead of opening one (the engine's, say). The ledger does
            not close an application it did not open.
        cipher_key: The key the store's events are encrypted with (see
            :func:`~flowledger.engine.encryption.generate_cipher_key`). None takes
            ``FLOWLEDGER_CIPHER_KEY`` if it is set, else the store is in clear text.

    Raises:
        StoreError: The URL is invalid or the store cannot be opened.
        CipherKeyError: The cipher key is malformed. A key that does not fit the
            store's events (wrong, missing, or given for a store in clear text) is
            reported when they are read.
        ValueError: Both ``store`` and ``application`` are given, or both
            ``application`` and ``cipher_key``.

    Example:
        >>> with Ledger("memory://") as ledger:
        ...     ledger.list()
        []
    """

    def __init__(
        self,
        store: StoreConfig | str | None = None,
        *,
        snapshot_interval: int | None = DEFAULT_SNAPSHOT_INTERVAL,
        application: LedgerApplication | None = None,
        cipher_key: str | None = None,
    ) -> None:
        if application is not None and store is not None:
            msg = "give a store or an application, not both"
            raise ValueError(msg)
        if application is not None and cipher_key is not None:
            msg = "give a cipher key or an application, not both (the application has its key)"
            raise ValueError(msg)
        self._owns_application = application is None
        if application is None:
            application = LedgerApplication(
                store, snapshot_interval=snapshot_interval, cipher_key=cipher_key
            )
        self._app = application
        self._views: LedgerViews | None = None
        self._views_lock = threading.Lock()

    @property
    def application(self) -> LedgerApplication:
        """The eventsourcing application the ledger reads through."""
        return self._app

    def get(
        self, execution_id: str, *, version: int | None = None, at: datetime | None = None
    ) -> ExecutionState:
        """Return an execution's state: now, right after event ``version``, or at ``at``.

        Args:
            execution_id: The execution.
            version: Rebuild the state from events 1 to ``version`` only.
            at: Rebuild the state from the events recorded at or before this moment
                (timezone-aware; an event exactly at ``at`` is included).

        Raises:
            ExecutionNotFoundError: No execution has this id.
            VersionNotFoundError: ``version`` is not in the history, or the execution
                had not started at ``at``.
            CorruptRecordError: A stored record cannot be read back.
            ValueError: Both ``version`` and ``at`` are given, or ``at`` is naive (a
                naive time is refused rather than guessed to be UTC or local).
        """
        if at is None:
            return self._app.load(execution_id, version).state()
        if version is not None:
            msg = "give version or at, not both"
            raise ValueError(msg)
        return self._state_at(execution_id, aware(at, "at"))

    def _state_at(self, execution_id: str, at: datetime) -> ExecutionState:
        events = self._app.read_events(execution_id)
        # Engine clocks may step back: the moment's state is built from every event
        # up to the last one recorded at or before it.
        count = max(
            (event.originator_version for event in events if event.timestamp <= at), default=0
        )
        if count == 0:
            started = events[0].timestamp.isoformat()
            detail = f"had not started at {at.isoformat()} (it started at {started})"
            raise VersionNotFoundError(execution_id, at, events[-1].originator_version, detail)
        prefix = [event for event in events if event.originator_version <= count]
        return self._app.rebuild(execution_id, prefix).state()

    def history(self, execution_id: str) -> builtins.list[HistoryEntry]:
        """Return every recorded event of an execution, in order, as history entries.

        Payloads (input, parameters, outputs) are decoded back to the values recorded.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            CorruptRecordError: A stored record cannot be read back (see :meth:`verify`).
        """
        entries = history_of(self._app, execution_id)
        # Sealed values open with their keys (redacted once a key was destroyed); an
        # export keeps them sealed, as recorded.
        if seals_payloads([entry.type for entry in entries[:2]]):
            return opened_history(entries, self._app.keys)
        return entries

    def list(
        self,
        status: ExecutionStatus | str | None = None,
        workflow_id: str | None = None,
        limit: int | None = DEFAULT_LIST_LIMIT,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> builtins.list[ExecutionState]:
        """Return executions, most recently started first.

        "Most recently started" is the order in which the ledger recorded the starts.
        The execution index is caught up first, then queried, and the states of the
        executions found are loaded. On PostgreSQL the ledger is scanned instead (an
        index kept in PostgreSQL itself is still to come).

        Args:
            status: Only executions in this status (an ``ExecutionStatus`` or its name,
                in any case).
            workflow_id: Only executions of this workflow.
            limit: At most this many (None: all).
            since: Only executions created at or after this moment (timezone-aware).
            until: Only executions created at or before this moment (timezone-aware).

        Raises:
            ValueError: ``status`` is not a status, ``limit`` is negative, or ``since``
                or ``until`` is naive.
            StoreError: The read models cannot be opened or written.
        """
        wanted = _status(status)
        if limit is not None and limit < 0:
            msg = f"limit must be 0 or more, not {limit}"
            raise ValueError(msg)
        query = ExecutionQuery(
            status=wanted,
            workflow_id=workflow_id,
            since=None if since is None else aware(since, "since"),
            until=None if until is None else aware(until, "until"),
            limit=limit,
        )
        if limit == 0:
            return []
        views = self._read_models()
        if not views.lists_executions:
            return scan_executions(self._app, query)
        return views.states(query)

    def metrics(
        self, workflow_id: str | None = None, action: str | None = None
    ) -> builtins.list[StepMetrics]:
        """Return step metrics per (workflow, action), sorted by workflow then action.

        Counts attempts of steps that run an action: started, completed, failed (timed
        out included), retries scheduled, timeouts, and duration percentiles. The step
        metrics read model is caught up first.

        Args:
            workflow_id: Only this workflow's steps.
            action: Only steps that run this action.

        Raises:
            StoreError: The read models cannot be opened or written.
        """
        return self._read_models().metrics(workflow_id, action)

    def rebuild_views(self) -> None:
        """Empty the read models and build them again from the ledger's first event.

        Never needed for correctness; useful after restoring a ledger from a backup
        without its views file, or to reclaim the views of a store whose records were
        repaired.

        Raises:
            StoreError: The read models cannot be opened or written.
        """
        self._read_models().rebuild()

    def _read_models(self) -> LedgerViews:
        # Opened on first use, so a ledger that only reads histories creates no file.
        with self._views_lock:
            if self._views is None:
                self._views = LedgerViews(self._app)
            return self._views

    def verify(self, execution_id: str | None = None) -> VerifyReport:
        """Verify the hash chain of one execution's stored history, or of all of them.

        Reads the stored records themselves: an edited, undecodable or missing record
        is reported as a problem, not raised.

        Raises:
            ExecutionNotFoundError: ``execution_id`` names no stored history.
        """
        return verify_histories(self._app, execution_id)

    def export(self, execution_id: str) -> dict[str, Any]:
        """Return an execution's definition, history and chain head as a JSON-ready dict.

        See :func:`~flowledger.engine.audit.export_execution` for the document's keys.
        Sealed values (personal data, retained payloads) stay sealed, as recorded; when
        some can no longer be opened (erased, purged), ``redacted`` lists them: each
        ``{"version", "path", "value": "[redacted]"}``.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            CorruptRecordError: A stored record cannot be read back.
        """
        bundle = export_execution(self._app, execution_id)
        sealed = seals_payloads([event["type"] for event in bundle["events"][:2]])
        redacted = redactions(bundle["events"], self._app.keys) if sealed else []
        if redacted:
            # For readers only: the events keep every sealed value as recorded.
            bundle["redacted"] = redacted
        return bundle

    def import_bundle(self, bundle: Mapping[str, Any]) -> str:
        """Store an exported execution (see :meth:`export`) after verifying it.

        The events are stored exactly as recorded, so the imported execution verifies
        and replays here with no actions registered. Importing a bundle whose history
        is already stored changes nothing and returns its id.

        Raises:
            ChainError: The bundle does not verify (every problem is listed).
            ImportConflictError: A different history is stored under the same id.
            CorruptRecordError: The events verify but do not rebuild an execution.
        """
        return import_bundle(self._app, bundle)

    def timeline(self, execution_id: str) -> builtins.list[TimelineLine]:
        """Return the audit timeline: one human-readable line per recorded event.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            CorruptRecordError: A stored record cannot be read back.
        """
        return audit_timeline(self.history(execution_id))

    def diff(self, execution_id: str, before: Moment, after: Moment | None = None) -> ExecutionDiff:
        """Return what changed in one execution between two moments.

        Args:
            execution_id: The execution.
            before: The earlier moment: an event version or a timezone-aware time.
            after: The later moment (None: now).

        Raises:
            ExecutionNotFoundError: No execution has this id.
            VersionNotFoundError: A moment is not in the history.
        """
        later = self.get(execution_id) if after is None else self._at(execution_id, after)
        return diff_states(self._at(execution_id, before), later)

    def compare(self, execution_id: str, other_id: str) -> ExecutionDiff:
        """Return how two executions of the same workflow differ, step by step.

        Raises:
            ExecutionNotFoundError: Either execution does not exist.
            ValueError: The executions run different workflows.
        """
        return compare_executions(self.get(execution_id), self.get(other_id))

    def what_if(
        self,
        execution_id: str,
        definition: DefinitionSource,
        *,
        stubs: Mapping[str, Any] | None = None,
    ) -> WhatIfReport:
        """Replay a recorded execution's input on a changed definition, in memory.

        No action runs: recorded outcomes are served for steps whose action and
        parameters are unchanged, the rest are stubbed. See
        :func:`~flowledger.engine.what_if.what_if`.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            DefinitionError: ``definition`` is not a valid definition.
        """
        # Imported here: the replay runs an engine, and the engine imports the ledger.
        from flowledger.engine.what_if import replay_what_if  # noqa: PLC0415

        return replay_what_if(self, execution_id, definition, stubs=stubs)

    def _at(self, execution_id: str, moment: Moment) -> ExecutionState:
        if isinstance(moment, datetime):
            return self.get(execution_id, at=moment)
        return self.get(execution_id, version=moment)

    def close(self) -> None:
        """Close the read models, and the store unless it was shared with the ledger."""
        with self._views_lock:
            if self._views is not None:
                self._views.close()
                self._views = None
        if self._owns_application:
            self._app.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _status(status: ExecutionStatus | str | None) -> ExecutionStatus | None:
    if status is None or isinstance(status, ExecutionStatus):
        return status
    try:
        return ExecutionStatus(status.upper())
    except ValueError:
        names = ", ".join(member.value for member in ExecutionStatus)
        msg = f"unknown execution status {status!r} (one of {names})"
        raise ValueError(msg) from None
