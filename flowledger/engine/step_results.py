"""What conditions and references read of an execution's steps during a planning pass.

Conditions name the steps' results ``steps`` and references read ``${input...}`` and
``${<step>.output...}``. Both read through a :class:`StepSource`: the steps of a whole
:class:`~flowledger.domain.state.ExecutionState`, or
(:class:`~flowledger.engine.frontier.RecordedSteps`) the aggregate itself, one step at a
time, so that a plan reads only the steps it needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from flowledger.domain.state import ExecutionState, StepState
from flowledger.domain.status import StepStatus

__all__ = ["ReferenceContext", "StateSteps", "StepResults", "StepSource", "step_source"]

_VALUES = {status: status.value for status in StepStatus}


class StepSource(Protocol):
    """What the planner reads of an execution: its input, and its steps in definition order."""

    @property
    def input(self) -> dict[str, Any]:
        """The execution input, with inputs provided later merged in."""
        ...

    def __iter__(self) -> Iterator[str]: ...

    def __len__(self) -> int: ...

    def __contains__(self, step_id: object) -> bool: ...

    def status(self, step_id: str) -> str:
        """Return a step's status, as a plain string."""
        ...

    def step(self, step_id: str) -> StepState:
        """Return a step's state."""
        ...


class StateSteps:
    """The steps of an :class:`ExecutionState`, as a :class:`StepSource`."""

    def __init__(self, state: ExecutionState) -> None:
        """Read ``state``."""
        self._steps = state.steps
        self.input = state.input

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._steps

    def status(self, step_id: str) -> str:
        """Return a step's status, as a plain string."""
        return _VALUES[self._steps[step_id].status]

    def step(self, step_id: str) -> StepState:
        """Return a step's state."""
        return self._steps[step_id]


def step_source(steps: ExecutionState | StepSource) -> StepSource:
    """Return ``steps`` as a :class:`StepSource`."""
    return StateSteps(steps) if isinstance(steps, ExecutionState) else steps


class StepResults(Mapping[str, dict[str, Any]]):
    """Step id to ``{"output", "status", "error"}``: what conditions call ``steps``.

    Each entry is built when it is first read, so a plan over a long workflow pays
    only for the steps its conditions and references read. Decisions made during a
    pass update a step's status (and output) through :meth:`settle`.

    Attributes:
        outputs: Outputs decided during the pass (a trigger's), by step id.
    """

    def __init__(self, steps: ExecutionState | StepSource) -> None:
        """Read the results of the steps of ``steps``."""
        self._steps = step_source(steps)
        self._settled: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self._built: dict[str, dict[str, Any]] = {}

    def status(self, step_id: str) -> str:
        """Return a step's status as a plain string, with this pass's decisions.

        Raises:
            KeyError: No such step.
        """
        return self._settled.get(step_id) or self._steps.status(step_id)

    def __getitem__(self, step_id: str) -> dict[str, Any]:
        entry = self._built.get(step_id)
        if entry is None:
            status = self.status(step_id)
            step = self._steps.step(step_id)
            output = self.outputs.get(step_id, step.output)
            entry = {"output": output, "status": status, "error": step.error}
            self._built[step_id] = entry
        return entry

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._steps

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def settle(self, step_id: str, status: str, *output: Any) -> None:
        """Record a decision's effect on a step: its status, and its output if given."""
        self._settled[step_id] = status
        if output:
            self.outputs[step_id] = output[0]
        self._built.pop(step_id, None)


class ReferenceContext(Mapping[str, Any]):
    """The roots ``${...}`` references resolve in: ``input``, and each step's result."""

    def __init__(self, steps: ExecutionState | StepSource, results: StepResults) -> None:
        """Resolve ``input`` in ``steps`` and step ids in ``results``."""
        self._steps = step_source(steps)
        self._results = results

    def __getitem__(self, root: str) -> Any:
        return self._steps.input if root == "input" else self._results[root]

    def __contains__(self, root: object) -> bool:
        return root == "input" or root in self._results

    def __iter__(self) -> Iterator[str]:
        yield "input"
        yield from self._results

    def __len__(self) -> int:
        return len(self._results) + 1
