"""Attaching payload guards to executions: new ones, loaded ones, and their histories.

An execution whose definition declares ``personal_data`` or ``retention`` records,
right after it starts, which keys seal its payloads (``PayloadKeysAssigned``). Every
object of that execution the engine or a ledger works with carries a guard built from
its definition and those keys, so what it records is sealed and what it reads is open
(or redacted, once a key is destroyed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from flowledger.domain.data_events import PayloadKeysAssigned
from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.domain.references import lookup_reference, parse_reference
from flowledger.domain.sealing import (
    REDACTED,
    PayloadGuard,
    guard,
    guard_of,
    holds_sealed,
    is_sealed,
)
from flowledger.domain.state import HistoryEntry
from flowledger.engine.keystore import KeyStore, subject_key_id
from flowledger.engine.planning import definition_of
from flowledger.engine.sealing import AesPayloadGuard, CachedKeys, SealingPolicy, open_sealed
from flowledger.errors import MissingInputError, SubjectForgottenError


def start_guarded(
    execution_id: str,
    definition: WorkflowDefinition,
    input_data: Mapping[str, Any] | None,
    at: datetime,
    keys: KeyStore,
) -> Execution:
    """Start an execution, sealing what its definition asks to (see :mod:`.sealing`).

    Raises:
        MissingInputError: The definition declares personal data and the input does
            not name the data subject. Nothing is recorded.
        SubjectForgottenError: The data subject was forgotten. Nothing is recorded.
    """
    policy = SealingPolicy.of(definition)
    if policy is None:
        return Execution.start(execution_id, definition, input_data, at)
    subject_key = None
    if policy.subject is not None:
        subject = lookup_reference(parse_reference(policy.subject), {"input": input_data or {}})
        if subject is None or isinstance(subject, Mapping | list):
            raise MissingInputError(policy.subject, "the data subject must be a plain value")
        subject_key = subject_key_id(keys, str(subject))
        if keys.destroyed(subject_key):
            raise SubjectForgottenError(subject_key)
    execution_key = f"execution:{execution_uuid(execution_id)}" if policy.retained else None
    payload_guard = AesPayloadGuard(policy, keys, subject_key, execution_key)
    execution = Execution.start(execution_id, definition, input_data, at, payload_guard)
    execution.assign_keys(subject_key, execution_key, at)
    return execution


def attach_guard(execution: Execution, keys: KeyStore) -> Execution:
    """Attach its guard to a loaded execution whose payloads are sealed (if not yet)."""
    recorded = execution.payload_keys
    if guard_of(execution) is not None or not any(recorded.values()):
        return execution
    policy = SealingPolicy.of(definition_of(execution)) or SealingPolicy(subject=None)
    payload_guard: PayloadGuard = AesPayloadGuard(
        policy, keys, recorded["subject"], recorded["execution"]
    )
    guard(execution, payload_guard)
    return execution


def seals_payloads(first_types: Sequence[str]) -> bool:
    """True when a history's first event types show its payloads are sealed.

    The keys that seal them are recorded as the event right after the start.
    """
    return len(first_types) > 1 and first_types[1] == PayloadKeysAssigned.__name__


def opened_history(entries: Sequence[HistoryEntry], keys: KeyStore) -> list[HistoryEntry]:
    """Return history entries with their sealed values opened (or redacted)."""
    cached = CachedKeys(keys)  # each key read once for the whole history
    return [
        replace(entry, data=open_sealed(cached, entry.data)) if holds_sealed(entry.data) else entry
        for entry in entries
    ]


def redactions(events: Sequence[Mapping[str, Any]], keys: KeyStore) -> list[dict[str, Any]]:
    """List the sealed values of exported events that no one can open any more.

    Each is ``{"version", "path", "value": "[redacted]"}``, the path within the event's
    ``data``. The events themselves keep every sealed value as recorded (the hash chain
    covers them); this list only says, for a reader, which ones are redacted.
    """
    cached = CachedKeys(keys)
    found: list[dict[str, Any]] = []
    for event in events:
        if holds_sealed(event["data"]):
            for path in _unopenable(cached, event["data"], ""):
                found.append({"version": event["version"], "path": path, "value": REDACTED})
    return found


def _unopenable(keys: KeyStore, value: Any, path: str) -> list[str]:
    """Paths of the sealed values inside ``value`` whose key is gone."""
    if is_sealed(value):
        opened = open_sealed(keys, value)
        return [path] if opened == REDACTED else _unopenable(keys, opened, path)
    if isinstance(value, Mapping):
        return [
            found
            for key, item in value.items()
            for found in _unopenable(keys, item, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(value, list):
        return [
            found
            for index, item in enumerate(value)
            for found in _unopenable(keys, item, f"{path}[{index}]")
        ]
    return []
