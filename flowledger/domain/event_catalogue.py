"""The catalogue of recordable execution events, by the name a history records."""

from __future__ import annotations

import inspect

from flowledger.domain import events
from flowledger.domain.events import ExecutionEvent


def _concrete_event_classes() -> dict[str, type[ExecutionEvent]]:
    """Every event class that can be recorded: the leaves of the catalogue, by name."""
    found = {}
    for _, cls in inspect.getmembers(events, inspect.isclass):
        if (
            issubclass(cls, ExecutionEvent)
            and cls.__module__ == events.__name__
            and not any(sub.__module__ == cls.__module__ for sub in cls.__subclasses__())
        ):
            found[cls.__name__] = cls
    return found


EVENT_CLASSES = _concrete_event_classes()
"""Event class by the name a history records (``type``), for every recordable event."""
