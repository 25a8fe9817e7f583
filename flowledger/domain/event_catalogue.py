"""The catalogue of recordable execution events, by the name a history records."""

from __future__ import annotations

import inspect

from flowledger.domain import data_events, events, lease_events, operator_events
from flowledger.domain.events import ExecutionEvent, ExecutionTransition
from flowledger.domain.status import ExecutionStatus


def _concrete_event_classes() -> dict[str, type[ExecutionEvent]]:
    """Every event class that can be recorded: the leaves of the catalogue, by name."""
    found = {}
    for module in (events, lease_events, operator_events, data_events):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, ExecutionEvent)
                and cls.__module__ == module.__name__
                and not any(sub.__module__ == cls.__module__ for sub in cls.__subclasses__())
            ):
                found[cls.__name__] = cls
    return found


EVENT_CLASSES = _concrete_event_classes()
"""Event class by the name a history records (``type``), for every recordable event."""

TERMINAL_EVENTS = frozenset(
    name
    for name, cls in EVENT_CLASSES.items()
    if issubclass(cls, ExecutionTransition) and ExecutionStatus(cls.STATUS).is_terminal
)
"""Names of the events that end an execution (they move it to a terminal status)."""
