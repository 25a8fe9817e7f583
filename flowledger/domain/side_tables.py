"""Values kept beside objects, by identity, and dropped with the object.

Derived values (an aggregate's step states, the rows packed for its snapshots, the
changes a reader follows) are kept outside the aggregate, so snapshots, equality and
replay see only what the events recorded.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["SideTable"]

V = TypeVar("V")


class SideTable(Generic[V]):
    """A value per live object, found by the object's identity."""

    def __init__(self) -> None:
        """Start empty."""
        self._values: dict[int, V] = {}

    def get(self, owner: object) -> V | None:
        """Return the value kept beside ``owner``, or None."""
        return self._values.get(id(owner))

    def setdefault(self, owner: object, value: V) -> V:
        """Return the value kept beside ``owner``, keeping ``value`` if there is none."""
        key = id(owner)
        kept = self._values.setdefault(key, value)
        if kept is value:
            weakref.finalize(owner, self._values.pop, key, None)
        return kept

    def of(self, owner: object, make: Callable[[], V]) -> V:
        """Return the value kept beside ``owner``, keeping ``make()`` if there is none."""
        kept = self._values.get(id(owner))
        return kept if kept is not None else self.setdefault(owner, make())
