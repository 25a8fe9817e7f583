"""Each step's read-only state, derived from its record and cached by record version.

Derived values are kept outside the aggregate, so snapshots and equality see only what
the events recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flowledger.domain.canonical import decode_payload
from flowledger.domain.side_tables import SideTable
from flowledger.domain.state import StepState
from flowledger.domain.status import StepStatus

__all__ = ["copied_error", "step_state", "step_states_of"]


def step_state(
    step_id: str, record: dict[str, Any], open_sealed: Callable[[Any], Any] | None = None
) -> StepState:
    """Return the read-only state of one step from its record.

    ``open_sealed`` opens the sealed values of its outputs (see :mod:`~.sealing`).
    """
    return StepState(
        step_id=step_id,
        status=StepStatus(record["status"]),
        attempts=record["attempts"],
        output=_decoded(record["output"], open_sealed),
        error=copied_error(record["error"]),
        started_at=record["started_at"],
        finished_at=record["finished_at"],
        duration_ms=record["duration_ms"],
        not_before=record["not_before"],
        reason=record["reason"],
        compensation_output=_decoded(record["compensation_output"], open_sealed),
    )


def _decoded(text: str | None, open_sealed: Callable[[Any], Any] | None) -> Any:
    if text is None:
        return None
    value = decode_payload(text)
    return value if open_sealed is None else open_sealed(value)


def copied_error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return a copy of recorded error data (or None)."""
    # The recorded dict is shared with the event that set it: hand out a copy.
    return None if error is None else dict(error)


# A step's StepState is rebuilt only when its record changed (its "version" moved): the
# engine reads the state after every transition, and decoding every step's output each
# time made long executions quadratic.
_STEP_STATES: SideTable[dict[str, tuple[int, StepState]]] = SideTable()


def step_states_of(record: object) -> dict[str, tuple[int, StepState]]:
    """Return the StepState cache of one aggregate object (dropped with it)."""
    return _STEP_STATES.of(record, dict)
