"""A test kit for workflows: fakes for actions, crash injection at every event, properties.

``check_workflow(definition, fakes, input)`` runs a definition with deterministic
:class:`Fake` actions on real SQLite files, crashes it after every event of its history
and recovers it with a new engine, and raises :class:`PropertyViolation` when replay,
crash recovery, rollback or resume does not hold.

The Hypothesis strategies :func:`behaviours` and :func:`crash_points` need Hypothesis
(``pip install 'flowledger[testing]'``); they are imported on first use, so the rest of
the kit works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowledger.testing._checks import (
    CrashPointResult,
    WorkflowCheckReport,
    check_workflow,
    check_workflow_async,
)
from flowledger.testing._crash import CrashingApplication, InjectedCrash, RunTrace
from flowledger.testing._fakes import Fake, FakeCall, TransientError
from flowledger.testing._properties import PropertyViolation, check_replay

if TYPE_CHECKING:
    from flowledger.testing._strategies import behaviours, crash_points

__all__ = [
    "CrashPointResult",
    "CrashingApplication",
    "Fake",
    "FakeCall",
    "InjectedCrash",
    "PropertyViolation",
    "RunTrace",
    "TransientError",
    "WorkflowCheckReport",
    "behaviours",
    "check_replay",
    "check_workflow",
    "check_workflow_async",
    "crash_points",
]

_STRATEGIES = frozenset({"behaviours", "crash_points"})


def __getattr__(name: str) -> Any:
    # The strategies import Hypothesis, which the rest of the kit does not need.
    if name in _STRATEGIES:
        from flowledger.testing import _strategies  # noqa: PLC0415

        return getattr(_strategies, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
