"""Sealed payload values: personal data and retained payloads, encrypted per key.

Parts of a payload (a personal input field, a step's output) may be recorded *sealed*:
replaced by an envelope ``{"$sealed": {"key": ..., "nonce": ..., "ciphertext": ...}}``
encrypted with a key kept outside the events. The hash chain covers the envelope, so
destroying the key (forgetting a data subject, purging an execution) leaves every
history verifiable while the value can no longer be read: readers show it as
:data:`REDACTED`.

The domain does no cryptography: the engine attaches a :class:`PayloadGuard` to an
execution it drives or reads, and the aggregate passes every payload it records through
the guard's ``seal`` and every payload it decodes through its ``open``. An execution
with no guard records and reads payloads as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flowledger.domain.canonical import decode_payload, encode_payload
from flowledger.domain.side_tables import SideTable

SEALED = "$sealed"
"""The one key of a sealed value's envelope."""

REDACTED = "[redacted]"
"""What readers see in place of a sealed value whose key was destroyed."""


class PayloadGuard(Protocol):
    """Seals the personal parts of payloads as they are recorded, and opens them."""

    def seal(self, event_name: str, field: str, step_id: str | None, value: Any) -> Any:
        """Return ``value`` (a payload field of an event about to be recorded) sealed.

        Args:
            event_name: The event's class name (``StepCompleted``...).
            field: The payload field (``output``, ``parameters``, ``input``...).
            step_id: The step the event is about, or None.
            value: The JSON value, decoded.
        """

    def open(self, value: Any) -> Any:
        """Return ``value`` with every envelope opened (or :data:`REDACTED`)."""


_GUARDS: SideTable[PayloadGuard] = SideTable()


def guard(execution: object, payload_guard: PayloadGuard) -> None:
    """Attach ``payload_guard`` to an execution object (kept beside it, never recorded)."""
    _GUARDS.setdefault(execution, payload_guard)


def guard_of(execution: object) -> PayloadGuard | None:
    """Return the guard attached to an execution object, or None."""
    return _GUARDS.get(execution)


def is_sealed(value: Any) -> bool:
    """True when ``value`` is a sealed value's envelope."""
    return isinstance(value, Mapping) and len(value) == 1 and SEALED in value


def holds_sealed(value: Any) -> bool:
    """True when ``value`` is, or holds anywhere inside it, a sealed value."""
    if is_sealed(value):
        return True
    if isinstance(value, Mapping):
        return any(holds_sealed(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(holds_sealed(item) for item in value)
    return False


def seal_payloads(
    payload_guard: PayloadGuard, event_class: type[Any], fields: Mapping[str, Any]
) -> dict[str, str]:
    """Return the payload fields of an event about to be recorded, sealed by the guard.

    Payload fields hold JSON text; each is decoded, sealed and encoded again. The
    definition an execution records is never sealed: it is not personal data, and
    audits read it.
    """
    sealed: dict[str, str] = {}
    step_id = fields.get("step_id")
    for name in event_class.PAYLOADS:
        text = fields.get(name)
        if name == "definition" or not isinstance(text, str):
            continue
        value = payload_guard.seal(event_class.__name__, name, step_id, decode_payload(text))
        sealed[name] = encode_payload(value)
    return sealed
