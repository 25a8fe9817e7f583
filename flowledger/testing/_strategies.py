"""Hypothesis strategies: fake behaviours per step, and crash points.

Needs Hypothesis (``pip install 'flowledger[testing]'``). Draws shrink towards the plain
case — no failure, the first crash point — so a failing example comes out minimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - the test suite has Hypothesis
    msg = (
        "flowledger.testing's Hypothesis strategies need Hypothesis: "
        "pip install 'flowledger[testing]' (or hypothesis>=6.100)"
    )
    raise ImportError(msg) from error

from flowledger.domain.definition import WorkflowDefinition
from flowledger.engine.actions import BUILTIN_ACTIONS
from flowledger.testing._fakes import Fake, FakeCall, TransientError
from flowledger.testing._setup import as_definition

_ECHO = Fake.echoes()


def behaviours(
    definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
    *,
    max_transient: int = 2,
    permanent: bool = True,
    outputs: Mapping[str, Any] | None = None,
) -> st.SearchStrategy[dict[str, Fake]]:
    """Draw a fake for each action of ``definition``, behaving per step.

    For each step whose action is not a built-in, draws how many of its first attempts
    fail with a retryable error (0 to ``max_transient``) and whether the attempt after
    them succeeds or fails permanently. Compensations succeed, returning their
    parameters. Pass the drawn dict to :func:`~flowledger.testing.check_workflow`.

    Args:
        definition: The workflow (a definition, or what ``load_definition`` takes).
        max_transient: Most retryable failures drawn per step.
        permanent: Whether a step may fail permanently (False: every step ends
            succeeding once its transient failures are used up).
        outputs: A step's output when it succeeds (default: its parameters, like
            ``echo``), so that references to its output resolve.

    Returns:
        A strategy of ``{action name: Fake}``.
    """
    workflow = as_definition(definition)
    builtins = set(BUILTIN_ACTIONS.names())
    steps_of: dict[str, list[str]] = {}
    for step in workflow.steps:
        if step.action and step.action not in builtins:
            steps_of.setdefault(step.action, []).append(step.id)
        if step.compensate and step.compensate.action not in builtins:
            steps_of.setdefault(step.compensate.action, [])
    given = dict(outputs or {})
    per_step = {
        step_id: _step_behaviour(given.get(step_id), max_transient, permanent)
        for step_ids in steps_of.values()
        for step_id in step_ids
    }
    return st.fixed_dictionaries(per_step).map(
        lambda drawn: {
            action: _action_fake({step_id: drawn[step_id] for step_id in step_ids})
            for action, step_ids in steps_of.items()
        }
    )


def crash_points(history_length: int) -> st.SearchStrategy[int]:
    """Draw an event number to crash after: 1 to ``history_length``.

    Take ``history_length`` from a report (``check_workflow(..., crash_points=())``)
    of the behaviour under test; points beyond another behaviour's history are skipped.

    Raises:
        ValueError: ``history_length`` is below 1.
    """
    if history_length < 1:
        msg = f"a history has at least one event, not {history_length}"
        raise ValueError(msg)
    return st.integers(min_value=1, max_value=history_length)


def _step_behaviour(output: Any, max_transient: int, permanent: bool) -> st.SearchStrategy[Fake]:
    ends = st.booleans() if permanent else st.just(False)
    return st.builds(
        lambda transient, fails: _attempts(transient, fails, output),
        st.integers(min_value=0, max_value=max_transient),
        ends,
    )


def _attempts(transient: int, fails: bool, output: Any) -> Fake:
    """Fail ``transient`` attempts retryably, then fail for good or succeed."""
    failing = Fake.raises(TransientError("transient failure"), retryable=True)
    last = Fake.raises("permanent failure") if fails else _success(output)
    return Fake.sequence(*([failing] * transient), last) if transient else last


def _success(output: Any) -> Fake:
    return _ECHO if output is None else Fake.returns(output)


def _action_fake(per_step: dict[str, Fake]) -> Fake:
    """One action's fake: each step's drawn behaviour; compensations echo."""
    steps = Fake.by_step(per_step, default=_ECHO)

    async def respond(call: FakeCall) -> Any:
        return await (_ECHO if call.compensation else steps).answer(call)

    return Fake(respond, f"Fake.by_step({per_step!r})")
