"""What the ``Execution`` aggregate records of each step, and how it finds it.

A step's record is a plain dict (it must survive the store's JSON transcoder
unchanged), created fresh for every step of a definition when an execution starts.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from flowledger.domain.status import StepStatus
from flowledger.errors import StepTimeoutError

StepRecord = dict[str, Any]
"""What the aggregate records of one step (see :func:`new_step_record`)."""

STEP_KEY_PREFIX = "step:"
# Step records are keyed by "step:<id>", never by the bare id: the store's transcoder
# reads any JSON object whose keys are exactly "_type_" and "_data_" as one of its own
# markers, and a workflow with exactly two steps of those names would otherwise make
# its snapshots unreadable.


def step_key(step_id: str) -> str:
    """Return the key of a step's record on the aggregate."""
    return STEP_KEY_PREFIX + step_id


def new_step_record() -> StepRecord:
    """Return the record of a step that has not started.

    ``output`` and ``compensation_output`` hold payload JSON text; ``interrupted`` is
    True from ``StepInterrupted`` until the step starts again or comes to rest;
    ``version`` is the version of the event that last changed the record.
    """
    return {
        "status": StepStatus.PENDING.value,
        "attempts": 0,
        "output": None,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "not_before": None,
        "reason": None,
        "compensation_output": None,
        "interrupted": False,
        "version": 0,
    }


def step_records_of(definition_json: str) -> dict[str, StepRecord]:
    """Return fresh records for every step of a canonical definition, in its order."""
    fresh = new_step_record()
    return {key: dict(fresh) for key in _step_keys(definition_json)}


@lru_cache(maxsize=256)
def _step_keys(definition_json: str) -> tuple[str, ...]:
    return tuple(step_key(step["id"]) for step in json.loads(definition_json)["steps"])


def timeout_error(step_id: str, timeout: float) -> dict[str, Any]:
    """Return the error data recorded when an attempt of ``step_id`` times out."""
    message = str(StepTimeoutError(step_id, timeout))
    return {"type": StepTimeoutError.__name__, "message": message, "retryable": True}
