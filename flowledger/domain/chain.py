"""The hash chain that makes an execution's history tamper-evident.

Each event stores ``prev_hash`` (the hash of the event before it, or :data:`GENESIS`)
and ``hash``, the SHA-256 of ``prev_hash`` followed by the canonical JSON of the event's
type, originator, version, timestamp and data. Changing, removing, inserting or
reordering a stored event therefore breaks the chain at that event. This module is pure:
it works on :class:`ChainLink` values, so the ledger can verify stored records with the
same code the aggregate uses to write them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from flowledger.domain.canonical import canonical_json_of_plain, json_ready, sha256_hex

GENESIS = "0" * 64
"""The ``prev_hash`` of an execution's first event."""

NOT_HASHED = frozenset({"originator_id", "originator_version", "timestamp", "hash"})
"""Event fields that are not part of the hashed ``data`` (they are hashed separately,
or are the hash itself)."""


def event_hash(  # noqa: PLR0917 - each argument is one hashed part of the event
    prev_hash: str,
    type_name: str,
    originator_id: str,
    version: int,
    timestamp: datetime,
    data: Mapping[str, Any],
) -> str:
    """Return the hash of one event (64 hex digits).

    Args:
        prev_hash: Hash of the event before it, or :data:`GENESIS`.
        type_name: The event's class name, for example ``StepStarted``.
        originator_id: The aggregate's id, as a string.
        version: The event's position in the history (from 1).
        timestamp: When it happened.
        data: Every other field of the event except ``hash`` (``prev_hash``
            included). Datetimes are hashed in their ISO form.
    """
    document = {
        "type": type_name,
        "originator_id": originator_id,
        "version": version,
        "timestamp": timestamp.isoformat(),
        "data": json_ready(data),
    }
    return sha256_hex(prev_hash + canonical_json_of_plain(document))


def chained(
    type_name: str,
    fields: Mapping[str, Any],
    *,
    prev_hash: str,
    originator_id: str,
    version: int,
    timestamp: datetime,
) -> dict[str, Any]:
    """Return a new event's fields with its links: ``prev_hash`` and ``hash``.

    Args:
        type_name: The event's class name.
        fields: The event's own fields.
        prev_hash: Hash of the event before it, or :data:`GENESIS`.
        originator_id: The aggregate's id, as a string.
        version: The new event's version.
        timestamp: When it happens.
    """
    data = {"prev_hash": prev_hash, **fields}
    digest = event_hash(prev_hash, type_name, originator_id, version, timestamp, data)
    return {**data, "hash": digest}


@dataclass(frozen=True)
class ChainLink:
    """One event as the chain sees it, independent of how it is stored.

    Attributes:
        version: Position in the history (from 1).
        type_name: The event's class name.
        originator_id: The aggregate's id, as a string.
        timestamp: When the event happened.
        data: The hashed fields (everything but originator id, version, timestamp and
            hash; ``prev_hash`` included).
        hash: The stored hash.
        prev_hash: The stored hash of the previous event.
    """

    version: int
    type_name: str
    originator_id: str
    timestamp: datetime
    data: Mapping[str, Any]
    hash: str
    prev_hash: str

    def recompute(self) -> str:
        """Return the hash this link's contents should have."""
        return event_hash(
            self.prev_hash,
            self.type_name,
            self.originator_id,
            self.version,
            self.timestamp,
            self.data,
        )


class ChainedEvent(Protocol):
    """What :func:`link_of` needs of an event: the store's fields and the two hashes."""

    @property
    def originator_id(self) -> UUID:
        """The aggregate's id."""

    @property
    def originator_version(self) -> int:
        """The event's position in the history."""

    @property
    def timestamp(self) -> datetime:
        """When the event happened."""

    @property
    def hash(self) -> str:
        """The event's hash."""

    @property
    def prev_hash(self) -> str:
        """The previous event's hash."""


def link_of(event: ChainedEvent) -> ChainLink:
    """Return the chain link of a flowledger event object."""
    return ChainLink(
        version=event.originator_version,
        type_name=type(event).__name__,
        originator_id=str(event.originator_id),
        timestamp=event.timestamp,
        data={key: value for key, value in vars(event).items() if key not in NOT_HASHED},
        hash=event.hash,
        prev_hash=event.prev_hash,
    )


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying a chain.

    Attributes:
        ok: True when every link verified (and the head matched, when one was expected).
        checked: How many links were read, the broken one included.
        broken_at: The version at which the chain first breaks, or None. For a head
            that does not match the expected one, the last version read (0 when the
            history is empty).
        reason: What did not match, or None.
        head: Hash of the last link that verified (:data:`GENESIS` for none).
    """

    ok: bool
    checked: int
    broken_at: int | None = None
    reason: str | None = None
    head: str = GENESIS


def verify_chain(links: Iterable[ChainLink], expected_head: str | None = None) -> ChainReport:
    """Verify a history link by link and report the first break.

    Versions must run 1, 2, 3… without gaps, each ``prev_hash`` must be the hash of the
    link before it, and each stored hash must be what the link's contents hash to.

    Args:
        links: The history, in stored order.
        expected_head: The hash the last link should have (for example, one recorded
            elsewhere); catches events removed from or added at the end.
    """
    head = GENESIS
    checked = 0
    for link in links:
        checked += 1
        reason = _link_problem(link, checked, head)
        if reason is not None:
            return ChainReport(False, checked, checked, reason, head)
        head = link.hash
    if expected_head is not None and head != expected_head:
        reason = f"head {head} does not match the expected head {expected_head}"
        return ChainReport(False, checked, checked, reason, head)
    return ChainReport(True, checked, None, None, head)


def _link_problem(link: ChainLink, expected_version: int, previous_hash: str) -> str | None:
    if link.version != expected_version:
        return f"expected version {expected_version}, found {link.version}"
    if link.prev_hash != previous_hash:
        return f"prev_hash {link.prev_hash} is not the previous hash {previous_hash}"
    recomputed = link.recompute()
    if recomputed != link.hash:
        return f"stored hash {link.hash} does not match the recomputed {recomputed}"
    return None
