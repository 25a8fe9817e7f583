"""What the planner reads of an execution's steps, kept up to date one changed step at a time.

The engine plans after every step transition. Reading every step each time (building the
whole ``ExecutionState``, visiting every step) made each plan cost O(steps) and a run
O(steps²). A :class:`Frontier` keeps, for one aggregate object, what the planner asks of
the steps:

- every step's status, when a FAILED step's retry may start, and how many incoming edges
  of each step are not resolved yet (their source is not at rest);
- the steps that may have something to decide: PENDING steps whose incoming edges are
  all resolved, PAUSED steps, FAILED steps waiting for a retry;
- the steps in flight, the FAILED steps that fail the execution, the failed
  compensations, and how many steps are not at rest.

It reads every step once, then only those whose record changed since the version it
last read (:meth:`~flowledger.domain.execution_state.ExecutionRecord.steps_changed_since`).
It holds nothing the aggregate did not record and equals a frontier read from scratch at
the same version, so a plan stays a function of the recorded state. Frontiers are kept
outside the aggregate, keyed by the object and dropped with it (snapshots and equality
never see them); a lock per frontier makes the planners that read one take turns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.execution import Execution
from flowledger.domain.side_tables import SideTable
from flowledger.domain.state import StepState
from flowledger.domain.status import StepStatus

__all__ = ["Frontier", "RecordedSteps", "frontier_of"]

# Plain strings, as the aggregate records them.
_PENDING = StepStatus.PENDING.value
_PAUSED = StepStatus.PAUSED.value
_FAILED = StepStatus.FAILED.value
_COMPENSATION_FAILED = StepStatus.COMPENSATION_FAILED.value
_IN_FLIGHT = frozenset({StepStatus.RUNNING.value, StepStatus.COMPENSATING.value})
_RESTING = frozenset(
    {StepStatus.COMPLETED.value, StepStatus.SKIPPED.value, StepStatus.CANCELLED.value}
)


class Frontier:
    """The planner's view of one execution's steps at :attr:`version`.

    Attributes:
        version: The aggregate version read (-1: none yet).
        order: Step id to its position in the definition's topological order.
        status: Every step's status, as a plain string, in definition order.
        not_before: FAILED steps waiting for a retry, to when it may start.
        unresolved: Step id to how many of its incoming edges are not resolved.
        ready: PENDING steps whose incoming edges are all resolved.
        paused: PAUSED steps.
        in_flight: RUNNING and COMPENSATING steps.
        failed: FAILED steps with no retry pending and no ``continue_on_error``.
        compensation_failed: COMPENSATION_FAILED steps.
        restless: How many steps are not at rest.
        lock: Held while the frontier is refreshed and read.
    """

    def __init__(self, definition: WorkflowDefinition) -> None:
        """Prepare an empty frontier for executions of ``definition``."""
        self.version = -1
        self.order = {step.id: index for index, step in enumerate(definition.steps)}
        self._downstream = {
            step.id: tuple(after.id for after in definition.downstream(step.id))
            for step in definition.steps
        }
        self._edges = {
            step.id: [edge.source for edge in step.depends_on] for step in definition.steps
        }
        self._tolerant = frozenset(step.id for step in definition.steps if step.continue_on_error)
        self.status: dict[str, str] = {}
        self.not_before: dict[str, datetime] = {}
        self.unresolved: dict[str, int] = {}
        self.ready: set[str] = set()
        self.paused: set[str] = set()
        self.in_flight: set[str] = set()
        self.failed: set[str] = set()
        self.compensation_failed: set[str] = set()
        self.restless = 0
        self.lock = threading.Lock()

    def refresh(self, execution: Execution) -> None:
        """Bring the frontier up to ``execution``'s version."""
        changed = execution.steps_changed_since(self.version)
        self.version = -1  # should this fail, read every step next time
        if changed is None:
            self._read_all(execution)
        else:
            for step_id in dict.fromkeys(changed):
                self._read(execution, step_id)
        self.version = execution.version

    def at_rest(self, step_id: str, status: str) -> bool:
        """True when a step with ``status`` will not change any more (a resolved source)."""
        if status == _FAILED:
            return step_id not in self.not_before
        return status in _RESTING

    def in_order(self, step_ids: Iterable[str]) -> list[str]:
        """Return ``step_ids`` in definition order."""
        return sorted(step_ids, key=self.order.__getitem__)

    def _read_all(self, execution: Execution) -> None:
        self.status = {step_id: execution.step_status(step_id).value for step_id in self.order}
        self.not_before = {}
        for step_id, status in self.status.items():
            not_before = execution.step_not_before(step_id) if status == _FAILED else None
            if not_before is not None:
                self.not_before[step_id] = not_before
        resting = {
            step_id for step_id, status in self.status.items() if self.at_rest(step_id, status)
        }
        self.restless = len(self.status) - len(resting)
        self.unresolved = {
            step_id: sum(source not in resting for source in sources)
            for step_id, sources in self._edges.items()
        }
        for kind in self._kinds():
            kind.clear()
        for step_id in self.status:
            self._file(step_id)

    def _read(self, execution: Execution, step_id: str) -> None:
        """Read one step whose record changed, and what that changes downstream."""
        rested = self.at_rest(step_id, self.status[step_id])
        self._unfile(step_id)
        status = self.status[step_id] = execution.step_status(step_id).value
        not_before = execution.step_not_before(step_id) if status == _FAILED else None
        if not_before is None:
            self.not_before.pop(step_id, None)
        else:
            self.not_before[step_id] = not_before
        rests = self.at_rest(step_id, status)
        self._file(step_id)
        if rests == rested:
            return
        change = -1 if rests else 1
        self.restless += change
        for after in self._downstream[step_id]:
            self.unresolved[after] += change
            self._unfile(after)
            self._file(after)

    def _file(self, step_id: str) -> None:
        status = self.status[step_id]
        if status == _PENDING:
            if not self.unresolved[step_id]:
                self.ready.add(step_id)
        elif status == _PAUSED:
            self.paused.add(step_id)
        elif status in _IN_FLIGHT:
            self.in_flight.add(step_id)
        elif status == _FAILED:
            if step_id not in self.not_before and step_id not in self._tolerant:
                self.failed.add(step_id)
        elif status == _COMPENSATION_FAILED:
            self.compensation_failed.add(step_id)

    def _unfile(self, step_id: str) -> None:
        for kind in self._kinds():
            kind.discard(step_id)

    def _kinds(self) -> tuple[set[str], ...]:
        return (self.ready, self.paused, self.in_flight, self.failed, self.compensation_failed)


class RecordedSteps:
    """What one plan reads of an execution: its input, and its steps through a frontier."""

    def __init__(self, execution: Execution, frontier: Frontier) -> None:
        """Read ``execution`` through ``frontier`` (refreshed to its version)."""
        self.execution = execution
        self.frontier = frontier
        self._input: dict[str, Any] | None = None

    @property
    def input(self) -> dict[str, Any]:
        """The execution input, with inputs provided later merged in (read once)."""
        if self._input is None:
            self._input = self.execution.execution_input()
        return self._input

    def __iter__(self) -> Iterator[str]:
        return iter(self.frontier.status)

    def __len__(self) -> int:
        return len(self.frontier.status)

    def __contains__(self, step_id: object) -> bool:
        return step_id in self.frontier.status

    def status(self, step_id: str) -> str:
        """Return a step's status, as a plain string."""
        return self.frontier.status[step_id]

    def not_before(self, step_id: str) -> datetime | None:
        """Return when a FAILED step's retry may start, or None."""
        return self.frontier.not_before.get(step_id)

    def step(self, step_id: str) -> StepState:
        """Return a step's state."""
        return self.execution.step_state(step_id)


_FRONTIERS: SideTable[Frontier] = SideTable()


def frontier_of(execution: Execution, definition: WorkflowDefinition) -> Frontier:
    """Return the frontier of ``execution`` (which runs ``definition``), not yet refreshed.

    Refresh and read it while holding its lock.
    """
    return _FRONTIERS.of(execution, lambda: Frontier(definition))
