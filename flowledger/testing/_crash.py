"""Crash injection: a ledger application that stops storing after a chosen event.

:class:`CrashingApplication` is a :class:`~flowledger.engine.ledger_app.LedgerApplication`
whose event store keeps the events of the execution until ``crash_after`` of them are
stored. A save that would cross that point stores exactly the prefix that reaches it (a
prefix of one execution's events is a valid history) and raises :class:`InjectedCrash`,
and so does every later save. The engine reacts as to any store failure: the runner of
the execution stops, leaving the store as a crash would. Saves of both
``Application.save`` and the engine's ``save_events`` go through the event store, so
neither can slip past the crash.

The :class:`RunTrace` of a run is shared by the crashing engine and the engine that
recovers: it records, in one order, each event stored and each call of a fake, and tells
a fake which attempt of its step is running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import EventStore, Recording

from flowledger.domain.events import CompensationStarted, ExecutionEvent, StepStarted
from flowledger.engine.ledger_app import DEFAULT_SNAPSHOT_INTERVAL, LedgerApplication
from flowledger.errors import StoreError
from flowledger.testing._fakes import FakeCall

TraceEntry = ExecutionEvent | FakeCall
"""One entry of a run's trace: an event that was stored, or a call of a fake."""


class InjectedCrash(StoreError):
    """The store refused a save because the kit crashed it after event ``crash_after``.

    Attributes:
        crash_after: The last event the store kept.
    """

    def __init__(self, url: str, crash_after: int) -> None:
        self.crash_after = crash_after
        super().__init__(url, f"crash injected after event {crash_after}")


class RunTrace:
    """What happened in one run, in order, across the engines that took part in it.

    Thread-safe: events are stored from the engine's writer thread, fakes are called
    on the event loop.

    Args:
        loop: The event loop the run is driven on (to wake it when the store crashes).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._entries: list[TraceEntry] = []
        self._running: dict[str, tuple[int, bool]] = {}
        self._invocations: dict[tuple[str, str], int] = {}
        self.crashed = asyncio.Event()
        """Set once the store crashed."""

    @property
    def entries(self) -> list[TraceEntry]:
        """Every stored event and every fake call, in the order they happened."""
        with self._lock:
            return list(self._entries)

    @property
    def stored(self) -> list[ExecutionEvent]:
        """The events stored, in the order they were stored."""
        return [entry for entry in self.entries if isinstance(entry, ExecutionEvent)]

    @property
    def calls(self) -> list[FakeCall]:
        """The calls of fakes, in the order they were made."""
        return [entry for entry in self.entries if isinstance(entry, FakeCall)]

    def record_stored(self, events: Sequence[ExecutionEvent]) -> None:
        """Note events the store committed."""
        with self._lock:
            for event in events:
                self._entries.append(event)
                # An action starts only after its start is stored, so this is the
                # attempt (or compensation) of the step's next call.
                if isinstance(event, StepStarted):
                    self._running[event.step_id] = (event.attempt, False)
                elif isinstance(event, CompensationStarted):
                    self._running[event.step_id] = (1, True)

    def record_call(self, action: str, step_id: str, parameters: dict[str, Any]) -> FakeCall:
        """Note a call of the fake of ``action`` for ``step_id`` and return it."""
        with self._lock:
            attempt, compensation = self._running.get(step_id, (1, False))
            key = (action, step_id)
            self._invocations[key] = self._invocations.get(key, 0) + 1
            call = FakeCall(
                action=action,
                step_id=step_id,
                attempt=attempt,
                invocation=self._invocations[key],
                parameters=parameters,
                compensation=compensation,
            )
            self._entries.append(call)
        return call

    def mark_crashed(self) -> None:
        """Wake the run's driver: the store crashed (callable from any thread)."""
        self._loop.call_soon_threadsafe(self.crashed.set)


class _CrashingEventStore(EventStore[UUID]):
    """An event store that keeps events up to a version, then refuses every save."""

    def __init__(self, application: CrashingApplication) -> None:
        super().__init__(mapper=application.mapper, recorder=application.recorder)
        self._app = application
        self._lock = threading.Lock()

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Recording[UUID]]:
        app = self._app
        with self._lock:
            if app.crashed:
                raise InjectedCrash(app.store.url, app.crash_after or 0)
            kept = [
                event
                for event in domain_events
                if app.crash_after is None or event.originator_version <= app.crash_after
            ]
            recordings = super().put(kept, **kwargs) if kept else []
            app.trace.record_stored(kept)
            if len(kept) < len(domain_events):
                app.crashed = True
                app.trace.mark_crashed()
                raise InjectedCrash(app.store.url, app.crash_after or 0)
            return recordings


class CrashingApplication(LedgerApplication):
    """A ledger application that stores an execution's first ``crash_after`` events only.

    For a store holding one execution (the kit gives each run its own file).

    Args:
        store: The store URL.
        trace: The run's trace; every stored event is noted in it.
        crash_after: Keep events up to this version, then crash (None: never crash).
        snapshot_interval: As for :class:`~flowledger.engine.ledger_app.LedgerApplication`.
    """

    def __init__(
        self,
        store: str,
        *,
        trace: RunTrace,
        crash_after: int | None = None,
        snapshot_interval: int | None = DEFAULT_SNAPSHOT_INTERVAL,
    ) -> None:
        # Set before the base class builds the event store, which reads them.
        self.trace = trace
        self.crash_after = crash_after
        self.crashed = False
        super().__init__(store, snapshot_interval=snapshot_interval)

    def construct_event_store(self) -> EventStore[UUID]:
        """Return the event store that injects the crash."""
        return _CrashingEventStore(self)
