"""Compact snapshots of an execution: no definition inside, step records packed.

A plain eventsourcing snapshot holds every attribute of the aggregate, so an
execution's snapshot repeated its whole canonical definition (2.2 MB at 10,000 steps)
and one transcoded dict per step: taking one cost milliseconds on the engine's writer
and loading one cost more than 50 ms. :class:`ExecutionSnapshot` leaves the definition
out (it is immutable and content-addressed: the snapshot keeps its hash, and the text is
found again by hash, see :func:`remember_definition_text`) and packs the step records into
one JSON text, unpacked the first time a step record is read.

Loading a snapshot therefore needs the definition text in this process's cache: a
loader that meets :class:`DefinitionNotCached` reads the execution's first event (which
records the definition), which remembers it, and loads again.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

from eventsourcing.domain import Snapshot
from eventsourcing.utils import resolve_topic

from flowledger.domain.canonical import sha256_hex
from flowledger.domain.execution_state import ExecutionRecord
from flowledger.domain.side_tables import SideTable
from flowledger.domain.step_packing import pack_steps

__all__ = [
    "DefinitionNotCached",
    "ExecutionSnapshot",
    "cached_definition_text",
    "remember_definition_text",
]

MAX_CACHED_DEFINITIONS = 64
"""Most definition texts remembered by hash in one process (least recently used go)."""

_DEFINITIONS: OrderedDict[str, str] = OrderedDict()
_DEFINITIONS_LOCK = Lock()


class DefinitionNotCached(LookupError):
    """A snapshot was loaded before its execution's definition text was remembered.

    Attributes:
        definition_hash: The hash of the definition that is needed.
    """

    def __init__(self, definition_hash: str) -> None:
        super().__init__(f"definition {definition_hash} is not cached in this process")
        self.definition_hash = definition_hash


def remember_definition_text(definition_hash: str, text: str) -> bool:
    """Remember a canonical definition text by its hash, if the text has that hash.

    Returns:
        True if the text is (now) remembered, False if its hash is not
        ``definition_hash`` (a damaged record: nothing is remembered).
    """
    with _DEFINITIONS_LOCK:
        known = _DEFINITIONS.get(definition_hash)
        if known is not None:
            _DEFINITIONS.move_to_end(definition_hash)
            return known == text
    if sha256_hex(text) != definition_hash:
        return False
    with _DEFINITIONS_LOCK:
        _DEFINITIONS[definition_hash] = text
        while len(_DEFINITIONS) > MAX_CACHED_DEFINITIONS:
            _DEFINITIONS.popitem(last=False)
    return True


def cached_definition_text(definition_hash: str) -> str | None:
    """Return the remembered definition text of this hash, or None."""
    with _DEFINITIONS_LOCK:
        text = _DEFINITIONS.get(definition_hash)
        if text is not None:
            _DEFINITIONS.move_to_end(definition_hash)
        return text


_PACKED_ROWS: SideTable[dict[str, tuple[int, str]]] = SideTable()
"""The rows packed for each aggregate's earlier snapshots. Most records of a long
execution do not change between two snapshots: they are packed once, not once per
snapshot (which made snapshotting quadratic)."""


class ExecutionSnapshot(Snapshot):
    """The state of an execution at one version, without its definition text."""

    @classmethod
    def take(cls, aggregate: Any) -> ExecutionSnapshot:
        """Take a snapshot of an execution (its step records are copied, packed)."""
        snapshot = super().take(aggregate)
        state = snapshot.state
        definition = state.pop("_definition")
        # A snapshot leaves the definition out: loading one finds it again by hash.
        remember_definition_text(state["_definition_hash"], definition)
        steps = state.pop("_steps", None)
        if steps is not None:
            state["_packed_steps"] = pack_steps(steps, _PACKED_ROWS.of(aggregate, dict))
        # else: the execution itself came from a snapshot and no step was read since.
        for name, value in state.items():
            if isinstance(value, list):  # the execution moves on: keep what it is now
                state[name] = list(value)
            elif isinstance(value, dict):
                state[name] = dict(value)
        return snapshot

    def mutate(self, _: None) -> ExecutionRecord:
        """Rebuild the execution; its step records are unpacked on first use.

        Raises:
            DefinitionNotCached: The definition text is not remembered in this process.
        """
        definition_hash = self.state["_definition_hash"]
        text = cached_definition_text(definition_hash)
        if text is None:
            raise DefinitionNotCached(definition_hash)
        aggregate_class = resolve_topic(self.topic)
        state = dict(self.state)
        state["_definition"] = text
        state["_id"] = self.originator_id
        state["_version"] = self.originator_version
        state["_pending_events"] = []
        aggregate: ExecutionRecord = object.__new__(aggregate_class)
        object.__setattr__(aggregate, "__dict__", state)
        return aggregate
