"""The eventsourcing application that records executions.

:class:`LedgerApplication` is the one ``Application`` of flowledger: the engine saves
executions through it and the :class:`~flowledger.engine.ledger.Ledger` reads through
it. It is configured only by a store URL (:mod:`flowledger.engine.stores`) and a
cipher key (:mod:`flowledger.engine.encryption`), loads
executions with a projector that skips the library's per-event protocol check (twice as
fast), and turns the library's errors into flowledger's. Stored records are read back
as events through :mod:`flowledger.engine.record_reading`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import (
    EventSourcingError,
    Snapshot,
)
from eventsourcing.persistence import (
    IntegrityError,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import Environment

from flowledger.domain.events import ExecutionEvent, ExecutionStarted
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.domain.snapshot import DefinitionNotCached, remember_definition_text
from flowledger.engine.encryption import KeyCheck, resolve_encryption
from flowledger.engine.keystore import KeyStore, open_key_store
from flowledger.engine.ledger_log import LedgerLog
from flowledger.engine.payload_guards import attach_guard
from flowledger.engine.postgres_setup import prepare_postgres
from flowledger.engine.record_reading import decode_record, reading, replay
from flowledger.engine.stores import StoreConfig, mask_password, parse_store_url
from flowledger.errors import (
    ConcurrencyConflictError,
    CorruptRecordError,
    ExecutionNotFoundError,
    StoreError,
    VersionNotFoundError,
)

logger = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_INTERVAL = 100
"""Events between two snapshots of an execution, unless told otherwise."""

SHORT_EXECUTION = 32
"""Executions of at most this many events are loaded without looking for a snapshot."""


class LedgerApplication(LedgerLog, Application[UUID]):
    """Records executions in the store a URL names, and reads them back.

    Args:
        store: A store URL, a parsed :class:`~flowledger.engine.stores.StoreConfig`,
            or None for the default (``FLOWLEDGER_STORE``, else ``sqlite:///flowledger.db``).
        snapshot_interval: Take a snapshot of an execution every this many events
            (0 or None: never).
        env: Further eventsourcing settings, applied over the store's and the
            cipher's. The process environment is not read for them: the store is
            chosen by the URL alone.
        cipher_key: Encrypt (AES-GCM) and compress every event and snapshot stored,
            with this key (see :func:`~flowledger.engine.encryption.generate_cipher_key`).
            None takes ``FLOWLEDGER_CIPHER_KEY`` if it is set, else stores in clear text.

    Raises:
        StoreError: The URL is invalid or the store cannot be opened.
        CipherKeyError: The cipher key is malformed.
        ValueError: ``snapshot_interval`` is negative.
    """

    snapshotting_projectors: ClassVar[dict[type[Any], Any]] = {Execution: replay}

    def __init__(
        self,
        store: StoreConfig | str | None = None,
        *,
        snapshot_interval: int | None = DEFAULT_SNAPSHOT_INTERVAL,
        env: Mapping[str, str] | None = None,
        cipher_key: str | None = None,
    ) -> None:
        if snapshot_interval is not None and snapshot_interval < 0:
            msg = f"snapshot_interval must be 0 or more, not {snapshot_interval}"
            raise ValueError(msg)
        self.store = store if isinstance(store, StoreConfig) else parse_store_url(store)
        encryption = resolve_encryption(cipher_key)
        self.snapshot_interval = snapshot_interval or None
        self.is_snapshotting_enabled = self.snapshot_interval is not None
        # eventsourcing declares the intervals on the class; each ledger has its own.
        self.snapshotting_intervals = (  # type: ignore[misc]
            {Execution: self.snapshot_interval} if self.snapshot_interval else {}
        )
        settings = {
            **self.store.env,
            "IS_SNAPSHOTTING_ENABLED": "y" if self.is_snapshotting_enabled else "n",
            **(encryption.env if encryption else {}),
            **(env or {}),
        }
        # On PostgreSQL, first: eventsourcing's pool hides why a server refuses, and it
        # creates tables in the URL's schema but not the schema itself.
        preparing = (
            prepare_postgres(self.store)
            if self.store.kind == "postgresql"
            else contextlib.nullcontext()
        )
        try:
            with preparing:
                super().__init__(env=settings)
        except (EventSourcingError, sqlite3.Error, OSError) as error:
            reason = self.store.scrub(f"cannot be opened: {error}")
            raise StoreError(mask_password(self.store.url), reason) from error
        source = encryption.source if encryption else None
        if self.mapper.cipher is not None and source is None:
            source = "the CIPHER_KEY setting"  # given through ``env``
        self.key_check = KeyCheck(self.mapper, self.recorder, source, self.store.display_url)
        """Whether the cipher key fits the store (see :class:`KeyCheck`)."""
        self._keys: KeyStore | None = None
        self._keys_lock = threading.Lock()

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Environment:
        """Return the settings given, without the process environment.

        eventsourcing would merge ``os.environ`` in, so that a stray
        ``PERSISTENCE_MODULE`` or ``SQLITE_DBNAME`` could redirect the ledger.
        """
        return Environment(name, dict(env or {}))

    # -- writing ----------------------------------------------------------------------

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Record the pending events of several executions in one transaction.

        Returns:
            What was recorded, one recording per event.

        Raises:
            ConcurrencyConflictError: Another writer recorded one of these executions'
                next version first; nothing of this save was recorded.
            CipherKeyError: The cipher key (or its absence) does not fit the events
                the store holds; nothing was recorded.
        """
        self.key_check.require_fit()
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError as error:
            raise ConcurrencyConflictError(_ids_of(objs)) from error

    def save_events(self, events: Sequence[ExecutionEvent]) -> None:
        """Record events already collected from their executions, in one transaction.

        The writer's path: it skips ``Application.save``'s gathering of events from
        aggregates (runtime protocol checks that cost a fifth of a small save) and its
        snapshotting (the writer snapshots from the aggregates it holds).

        Raises:
            ConcurrencyConflictError: Another writer recorded one of these executions'
                next version first; nothing of this save was recorded.
            CipherKeyError: The cipher key (or its absence) does not fit the events
                the store holds; nothing was recorded.
        """
        self.key_check.require_fit()
        try:
            self.events.put(list(events))
        except IntegrityError as error:
            raise ConcurrencyConflictError(_ids_of(events)) from error

    def snapshot_of(self, execution: Execution) -> Snapshot:
        """Take a snapshot of ``execution`` now, to record later with :meth:`record_snapshot`.

        The snapshot holds copies, so the execution may move on while the snapshot is
        encoded and stored.
        """
        return Execution.Snapshot.take(execution)

    def record_snapshot(self, snapshot: Snapshot) -> None:
        """Record a snapshot taken with :meth:`snapshot_of` (nothing without snapshots)."""
        if self.snapshots is not None:
            self.snapshots.put([snapshot])

    def put_snapshot(self, execution: Execution) -> None:
        """Record a snapshot of a saved execution at its current version.

        For writers that save bare events (which eventsourcing does not snapshot by
        itself). Does nothing when this ledger takes no snapshots.

        Raises:
            ValueError: The execution has events that are not saved yet.
        """
        if self.snapshots is None:
            return
        if execution.pending_events:
            msg = f"execution {execution.execution_id!r} has unsaved events: save them first"
            raise ValueError(msg)
        self.snapshots.put([Execution.Snapshot.take(execution)])

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # The events are committed by now. A failing snapshot must not make the caller
        # believe the save failed (a retry would conflict); loading still works, by
        # replaying from the previous snapshot.
        try:
            super()._take_snapshots(processing_event)
        except Exception:
            logger.warning(
                "a snapshot failed after the events were saved; loading replays more events",
                exc_info=True,
            )

    # -- loading ----------------------------------------------------------------------

    def load(self, execution_id: str, version: int | None = None) -> Execution:
        """Return an execution, as it is or right after event ``version``.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            VersionNotFoundError: ``version`` is below 1 or above the current version.
            CorruptRecordError: A stored record cannot be read back.
            CipherKeyError: The cipher key (or its absence) does not fit the store.
        """
        aggregate_id = execution_uuid(execution_id)
        with self._reading(execution_id):
            if version is not None and version < 1:
                latest = self._get(aggregate_id, execution_id, None).version
                detail = f"has no version {version} (versions start at 1)"
                raise VersionNotFoundError(execution_id, version, latest, detail)
            execution = self._get(aggregate_id, execution_id, version)
        if version is not None and execution.version < version:
            detail = f"has no version {version} (its latest is {execution.version})"
            raise VersionNotFoundError(execution_id, version, execution.version, detail)
        return self._guarded(execution)

    @property
    def keys(self) -> KeyStore:
        """The key store of sealed payloads, beside the events (opened on first use).

        With encryption at rest, key material is wrapped with the store's cipher key.
        """
        with self._keys_lock:
            if self._keys is None:
                cipher = self.mapper.cipher
                wrapping = getattr(cipher, "key", None) if cipher is not None else None
                self._keys = open_key_store(self.store, wrapping)
            return self._keys

    def close(self) -> None:
        """Close the key store (if it was opened), then the event store."""
        keys, self._keys = self.__dict__.get("_keys"), None  # None: never opened
        if keys is not None:
            keys.close()
        super().close()

    def _guarded(self, execution: Execution) -> Execution:
        """Attach the guard that opens (and seals) its payloads, when they are sealed."""
        if any(execution.payload_keys.values()):
            attach_guard(execution, self.keys)
        return execution

    @contextlib.contextmanager
    def _reading(self, execution_id: str) -> Iterator[None]:
        try:
            with reading(execution_id):
                yield
        except CorruptRecordError as error:
            self.key_check.explain(error)  # a wrong key is no damaged record
            raise

    def _get(self, aggregate_id: UUID, execution_id: str, version: int | None) -> Execution:
        if self.snapshot_interval:
            # Most executions are short: read their events in one query, instead of
            # first asking for a snapshot that would spare replaying a few events.
            records = self.recorder.select_events(
                aggregate_id, lte=version, limit=SHORT_EXECUTION + 1
            )
            if len(records) <= SHORT_EXECUTION:
                if not records:
                    raise AggregateNotFoundError(aggregate_id)
                if records[0].originator_version != 1:
                    raise CorruptRecordError(execution_id, 1, "the first event is missing")
                decode = self.mapper.to_domain_event
                found = replay(None, [cast(ExecutionEvent, decode(record)) for record in records])
                assert isinstance(found, Execution)
                return found
        try:
            execution: Execution = self.repository.get(
                aggregate_id, version=version, projector_func=replay
            )
        except DefinitionNotCached:
            # A snapshot's definition is found by hash; the first event records it.
            self._remember_definition_text(aggregate_id, execution_id)
            execution = self.repository.get(aggregate_id, version=version, projector_func=replay)
        return execution

    def _remember_definition_text(self, aggregate_id: UUID, execution_id: str) -> None:
        records = self.recorder.select_events(aggregate_id, lte=1)
        if not records:
            reason = "has a snapshot but no first event"
            raise CorruptRecordError(execution_id, 1, reason)
        started = self.decode(records[0], execution_id)
        if not isinstance(started, ExecutionStarted) or not remember_definition_text(
            started.definition_hash, started.definition
        ):
            reason = "does not record a definition that matches its hash"
            raise CorruptRecordError(execution_id, 1, reason)

    def rebuild(self, execution_id: str, events: Iterable[ExecutionEvent]) -> Execution:
        """Return the execution that ``events`` (from its first) build.

        Raises:
            ExecutionNotFoundError: ``events`` is empty.
            CorruptRecordError: The events do not form a history.
        """
        with reading(execution_id):
            execution = replay(None, events)
        if execution is None:
            raise ExecutionNotFoundError(execution_id)
        return self._guarded(execution)

    # -- reading stored records ---------------------------------------------------------

    def stored_records(self, aggregate_id: UUID) -> Sequence[StoredEvent]:
        """Return an execution's stored records, as stored, in version order."""
        return self.recorder.select_events(aggregate_id)

    def decode(self, record: StoredEvent, execution_id: str | None = None) -> ExecutionEvent:
        """Return the execution event a stored record holds, checked to be whole.

        Args:
            record: A stored record.
            execution_id: The execution's id, for the error (default: the aggregate id).

        Raises:
            CorruptRecordError: The record cannot be decoded, is not an execution
                event, or lacks a field or has one of the wrong type.
            CipherKeyError: The record cannot be decoded because the cipher key (or
                its absence) does not fit the store.
        """
        try:
            return decode_record(self.mapper, record, execution_id)
        except CorruptRecordError as error:
            self.key_check.explain(error)
            raise

    def read_events(self, execution_id: str) -> list[ExecutionEvent]:
        """Return an execution's events, decoded, in version order.

        Raises:
            ExecutionNotFoundError: No execution has this id.
            CorruptRecordError: A stored record cannot be read back.
        """
        records = self.stored_records(execution_uuid(execution_id))
        if not records:
            raise ExecutionNotFoundError(execution_id)
        return [self.decode(record, execution_id) for record in records]


def _ids_of(objs: Iterable[object]) -> list[str]:
    """The executions' ids, or aggregate ids for bare events, each once."""
    ids: dict[str, None] = {}
    for obj in objs:
        if isinstance(obj, Execution | ExecutionStarted):
            ids.setdefault(obj.execution_id)
        elif isinstance(obj, ExecutionEvent):
            ids.setdefault(str(obj.originator_id))
    return list(ids)
