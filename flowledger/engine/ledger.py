"""The public ``Ledger``: the synchronous read side and audit of recorded executions.

It reads what the engine recorded: an execution's state now, right after any event, or
as of any moment; its history; lists of executions; and it verifies and exports stored
histories. It can open a store of its own or share the engine's application (the only
way to read a ``memory://`` store, which lives inside one application).
"""

from __future__ import annotations

import builtins
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from flowledger.domain.execution_state import aware
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.audit import VerifyReport, export_execution, history_of, verify_histories
from flowledger.engine.ledger_app import DEFAULT_SNAPSHOT_INTERVAL, LedgerApplication
from flowledger.engine.stores import StoreConfig
from flowledger.errors import VersionNotFoundError

DEFAULT_LIST_LIMIT = 100
"""How many executions :meth:`Ledger.list` returns unless told otherwise."""


class Ledger:
    """Read recorded executions, verify and export their histories.

    Args:
        store: A store URL (or parsed :class:`~flowledger.engine.stores.StoreConfig`);
            None for the default (``FLOWLEDGER_STORE``, else ``sqlite:///flowledger.db``).
        snapshot_interval: Events between snapshots, for the application this ledger
            opens (0 or None: none).
        application: An open :class:`~flowledger.engine.ledger_app.LedgerApplication`
            to read through instead of opening one (the engine's, say). The ledger does
            not close an application it did not open.

    Raises:
        StoreError: The URL is invalid or the store cannot be opened.
        ValueError: Both ``store`` and ``application`` are given.

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
    ) -> None:
        if application is not None and store is not None:
            msg = "give a store or an application, not both"
            raise ValueError(msg)
        self._owns_application = application is None
        if application is None:
            application = LedgerApplication(store, snapshot_interval=snapshot_interval)
        self._app = application

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
        return history_of(self._app, execution_id)

    def list(
        self,
        status: ExecutionStatus | str | None = None,
        workflow_id: str | None = None,
        limit: int | None = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[ExecutionState]:
        """Return executions, most recently started first.

        "Most recently started" is the order in which the ledger recorded the starts.
        This scans the store; a read model will make it cheaper.

        Args:
            status: Only executions in this status (an ``ExecutionStatus`` or its name,
                in any case).
            workflow_id: Only executions of this workflow.
            limit: At most this many (None: all).

        Raises:
            ValueError: ``status`` is not a status, or ``limit`` is negative.
        """
        wanted = _status(status)
        if limit is not None and limit < 0:
            msg = f"limit must be 0 or more, not {limit}"
            raise ValueError(msg)
        started = [event for _, event in self._app.started_events()]
        states: builtins.list[ExecutionState] = []
        for event in reversed(started):
            if limit is not None and len(states) >= limit:
                break
            if workflow_id is not None and event.workflow_id != workflow_id:
                continue
            state = self._app.load(event.execution_id).state()
            if wanted is None or state.status is wanted:
                states.append(state)
        return states

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

        Raises:
            ExecutionNotFoundError: No execution has this id.
            CorruptRecordError: A stored record cannot be read back.
        """
        return export_execution(self._app, execution_id)

    def close(self) -> None:
        """Close the store, unless the application was shared with the ledger."""
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
