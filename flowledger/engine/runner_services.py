"""What a runner and its engine share: the services, commands, and the lease-lost stop.

An :class:`~flowledger.engine.runner.ExecutionRunner` is given :class:`EngineServices`
by the engine that spawns it, takes :data:`Command` callables from operators, and
stops with :class:`LeaseLost` when another worker took its execution over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from flowledger.domain.definition.model import RetryPolicy
from flowledger.domain.events import ExecutionEvent
from flowledger.domain.execution import Execution
from flowledger.engine.actions import ActionRegistry
from flowledger.engine.slots import SlotPool
from flowledger.errors import FlowledgerError

Command = Callable[[Execution, datetime], None]
"""An operator's command: applies aggregate commands at the given time."""

MAX_CONFLICTS = 20
"""Saves in a row another engine may get in first before the runner gives up."""

RELEASE_REASON = "the worker is stopping"
"""The reason recorded when a draining runner hands its execution back."""


class LeaseLost(FlowledgerError):
    """Another worker took the execution over: this runner must stop driving it.

    Attributes:
        execution_id: The execution.
        worker: The worker that drives it now (None: it was handed back).
    """

    def __init__(self, execution_id: str, worker: str | None) -> None:
        self.execution_id = execution_id
        self.worker = worker
        super().__init__(f"execution {execution_id!r} is driven by worker {worker!r} now")


@dataclass
class EngineServices:
    """What a runner needs of its engine."""

    actions: ActionRegistry
    slots: SlotPool
    retry_policy: RetryPolicy
    save: Callable[[Execution], Awaitable[list[ExecutionEvent]]]
    reload: Callable[[str], Awaitable[Execution]]
    clock: Callable[[], datetime]
    random: Callable[[], float]
    worker: str | None = None
    """The worker this engine is on a shared store (None: the store is not shared)."""
