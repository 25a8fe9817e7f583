"""Step and execution lifecycles, compiled into immutable transition tables.

Each lifecycle is declared once, here, with ``transitions`` and compiled at import into
a read-only ``(state, trigger) -> state`` table. The ``Machine`` is thrown away after
compiling: one machine per object costs kilobytes and a fraction of a millisecond, and a
machine attached to an aggregate would change its state without recording an event.
This module is also the only place that touches ``transitions``, which has no type
hints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from transitions import Machine

from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.errors import InvalidTransitionError

Table = Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class Lifecycle:
    """An immutable lifecycle: which trigger leads from which state to which.

    Attributes:
        name: What the lifecycle belongs to (``"step"`` or ``"execution"``); it is the
            ``entity`` of the errors it raises.
        states: Every state, in declaration order.
        initial: The state an entity starts in.
        terminal: States with no way out but a reopening trigger.
        table: ``(state, trigger) -> next state``, read-only.
        reopening: Triggers that lead out of a terminal state: only an operator's
            recorded intervention (retry or skip after a failure) fires them.
    """

    name: str
    states: tuple[str, ...]
    initial: str
    terminal: frozenset[str]
    table: Table
    reopening: frozenset[str] = frozenset()

    def allows(self, state: str, trigger: str) -> bool:
        """Return True when ``trigger`` may fire in ``state``."""
        return (state, trigger) in self.table

    def next_state(self, state: str, trigger: str, subject: str | None = None) -> str:
        """Return the state ``trigger`` leads to from ``state``.

        Args:
            state: The current state.
            trigger: The trigger to fire.
            subject: Id of the step or execution, for the error message.

        Raises:
            InvalidTransitionError: ``trigger`` is not allowed in ``state``.
        """
        try:
            return self.table[(state, trigger)]
        except KeyError:
            raise InvalidTransitionError(self.name, state, trigger, subject) from None

    def triggers(self) -> frozenset[str]:
        """Return every trigger that appears in the table."""
        return frozenset(trigger for _, trigger in self.table)


def compile_lifecycle(
    name: str,
    states: Iterable[str],
    transitions: Iterable[tuple[str, str, str]],
    initial: str,
    reopening: Iterable[str] = (),
) -> Lifecycle:
    """Declare a lifecycle with ``transitions`` and compile it into a :class:`Lifecycle`.

    Args:
        name: The lifecycle's name (used as the error's ``entity``).
        states: Every state.
        transitions: ``(trigger, source, dest)`` triples.
        initial: The initial state.
        reopening: Triggers that do not count as a way out when telling which states
            are terminal (an operator's intervention, not the engine's work).

    Raises:
        ValueError: A ``(state, trigger)`` pair leads to two different states, or a
            transition names an unknown state.
    """
    # Plain ``str`` everywhere: ``transitions`` treats enum members as enums, and the
    # aggregate keeps statuses as plain strings.
    state_list = tuple(str(state) for state in states)
    machine = Machine(
        model=None,
        states=list(state_list),
        transitions=[
            {"trigger": str(trigger), "source": str(source), "dest": str(dest)}
            for trigger, source, dest in transitions
        ],
        auto_transitions=False,
        initial=str(initial),
    )
    table = _table_of(machine)
    named = {state for state, _ in table} | set(table.values())
    if not named <= set(state_list):
        msg = f"transitions name unknown states: {sorted(named - set(state_list))}"
        raise ValueError(msg)
    reopeners = frozenset(str(trigger) for trigger in reopening)
    sources = {state for state, trigger in table if trigger not in reopeners}
    return Lifecycle(
        name=name,
        states=state_list,
        initial=str(initial),
        terminal=frozenset(state for state in state_list if state not in sources),
        table=MappingProxyType(table),
        reopening=reopeners,
    )


def _table_of(machine: Any) -> dict[tuple[str, str], str]:
    table: dict[tuple[str, str], str] = {}
    for trigger, event in machine.events.items():
        # ``event.transitions`` is a defaultdict: indexing it would insert an empty
        # entry, so it is only ever iterated.
        for source, candidates in event.transitions.items():
            for transition in candidates:
                key = (str(source), str(trigger))
                if table.setdefault(key, str(transition.dest)) != transition.dest:
                    msg = f"{trigger!r} from {source!r} leads to two states"
                    raise ValueError(msg)
    return table


_S = StepStatus
STEP_LIFECYCLE = compile_lifecycle(
    "step",
    StepStatus,
    [
        ("start", _S.PENDING, _S.RUNNING),
        ("skip", _S.PENDING, _S.SKIPPED),
        ("cancel", _S.PENDING, _S.CANCELLED),
        # Parameters are resolved before a step starts, so a missing input is found
        # while the step is still PENDING.
        ("pause", _S.PENDING, _S.PAUSED),
        ("complete", _S.RUNNING, _S.COMPLETED),
        ("fail", _S.RUNNING, _S.FAILED),
        # A timeout is a failure of the attempt (retryable).
        ("time_out", _S.RUNNING, _S.FAILED),
        ("pause", _S.RUNNING, _S.PAUSED),
        ("cancel", _S.RUNNING, _S.CANCELLED),
        # Found RUNNING after a crash: recorded, then restarted as a new attempt.
        ("interrupt", _S.RUNNING, _S.RUNNING),
        ("restart", _S.RUNNING, _S.RUNNING),
        ("start", _S.FAILED, _S.RUNNING),
        # The retry's waiting time is recorded; the step stays FAILED until it starts.
        ("schedule_retry", _S.FAILED, _S.FAILED),
        # A step waiting for its retry when the execution is cancelled or fails.
        ("cancel", _S.FAILED, _S.CANCELLED),
        ("start", _S.PAUSED, _S.RUNNING),
        ("cancel", _S.PAUSED, _S.CANCELLED),
        ("compensate", _S.COMPLETED, _S.COMPENSATING),
        ("roll_back", _S.COMPENSATING, _S.ROLLED_BACK),
        ("fail_compensation", _S.COMPENSATING, _S.COMPENSATION_FAILED),
        # Operators' interventions (recorded with an actor and a reason): a skip lets
        # the steps after it run; a retry makes a failed step's next attempt due now;
        # reopening a failed execution gives back the steps its failure cancelled.
        ("operator_skip", _S.PENDING, _S.SKIPPED),
        ("operator_skip", _S.PAUSED, _S.SKIPPED),
        ("operator_skip", _S.FAILED, _S.SKIPPED),
        ("operator_retry", _S.FAILED, _S.FAILED),
        ("reopen", _S.CANCELLED, _S.PENDING),
    ],
    initial=_S.PENDING,
    reopening=("reopen",),
)

_E = ExecutionStatus
EXECUTION_LIFECYCLE = compile_lifecycle(
    "execution",
    ExecutionStatus,
    [
        ("start", _E.PENDING, _E.RUNNING),
        ("complete", _E.RUNNING, _E.COMPLETED),
        ("fail", _E.RUNNING, _E.FAILED),
        ("pause", _E.RUNNING, _E.PAUSED),
        ("cancel", _E.RUNNING, _E.CANCELLED),
        ("start_rollback", _E.RUNNING, _E.ROLLING_BACK),
        ("resume", _E.PAUSED, _E.RUNNING),
        ("cancel", _E.PAUSED, _E.CANCELLED),
        # A cancel that rolls back may arrive while the execution waits for input.
        ("start_rollback", _E.PAUSED, _E.ROLLING_BACK),
        ("finish_rollback", _E.ROLLING_BACK, _E.ROLLED_BACK),
        ("fail_rollback", _E.ROLLING_BACK, _E.ROLLBACK_FAILED),
        # An operator's retry or skip after a failure (nothing was compensated).
        ("reopen", _E.FAILED, _E.RUNNING),
    ],
    initial=_E.PENDING,
    reopening=("reopen",),
)
