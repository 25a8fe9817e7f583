"""Crypto-shredding and purge never break verification or replay (DESIGN.md 1 and 6).

Hypothesis generates workflows of echo steps whose parameters read input fields,
earlier steps' outputs and literals, marks random input fields and step outputs as
personal data, may declare retention, and runs them on a real engine. Then it forgets
the data subject and/or purges, and checks: every history verifies and exports as a
bundle that verifies; the state loaded equals the state its events replay to, at every
version; exactly the personal values read as redacted after an erasure (everything
after a purge), and every other value is as the run recorded it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowledger import ExecutionState, Ledger, WorkflowEngine
from flowledger.domain.sealing import REDACTED
from flowledger.engine.bundles import verify_bundle

FIELDS = ("f0", "f1", "f2", "f3")
VALUES = st.one_of(
    st.integers(-1000, 1000), st.text(max_size=8), st.booleans(), st.none(), st.floats(-1, 1)
)


@dataclass(frozen=True)
class Case:
    definition: dict[str, Any]
    input: dict[str, Any]
    personal_input: frozenset[str]
    personal_outputs: dict[str, bool | frozenset[str]]
    retained: bool
    forget: bool
    purge: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    steps: list[dict[str, Any]] = []
    outputs: dict[str, bool | frozenset[str]] = {}
    for index in range(draw(st.integers(1, 4))):
        step_id = f"s{index}"
        parameters: dict[str, Any] = {}
        for name in draw(st.lists(st.sampled_from(("p", "q", "r")), unique=True, max_size=3)):
            sources = [f"${{input.{field}}}" for field in FIELDS]
            sources += [f"${{s{before}.output}}" for before in range(index)]
            parameters[name] = draw(st.sampled_from(sources) | VALUES)
        step: dict[str, Any] = {"id": step_id, "action": "echo", "parameters": parameters}
        marked = draw(st.sampled_from(["none", "whole", "some"]))
        if marked == "whole":
            step["personal_data"] = True
            outputs[step_id] = True
        elif marked == "some" and parameters:
            chosen = draw(st.lists(st.sampled_from(sorted(parameters)), unique=True, min_size=1))
            step["personal_data"] = chosen
            outputs[step_id] = frozenset(chosen)
        steps.append(step)
    personal_input = frozenset(draw(st.lists(st.sampled_from(FIELDS), unique=True)))
    retained = draw(st.booleans())
    definition: dict[str, Any] = {
        "id": "generated",
        "personal_data": {"subject": "${input.subject}", "input": sorted(personal_input)},
        "steps": steps,
    }
    if retained:
        definition["retention"] = {"days": 1}
    data = {field: draw(VALUES) for field in FIELDS} | {"subject": draw(st.text(min_size=1))}
    return Case(
        definition=definition,
        input=data,
        personal_input=personal_input,
        personal_outputs=outputs,
        retained=retained,
        forget=draw(st.booleans()),
        purge=retained and draw(st.booleans()),
    )


def redacted(case: Case, state: ExecutionState) -> tuple[Any, dict[str, Any]]:
    """The input and outputs a reader should see after the case's erasure or purge."""
    if case.purge:
        return REDACTED, dict.fromkeys(state.outputs, REDACTED)
    if not case.forget:
        return state.input, state.outputs
    data = {k: REDACTED if k in case.personal_input else v for k, v in state.input.items()}
    outputs: dict[str, Any] = {}
    for step_id, output in state.outputs.items():
        marked = case.personal_outputs.get(step_id, False)
        if marked is True:
            outputs[step_id] = REDACTED
        elif marked:
            outputs[step_id] = {k: REDACTED if k in marked else v for k, v in output.items()}
        else:
            outputs[step_id] = output
    return data, outputs


def check_history(ledger: Ledger, execution_id: str) -> None:
    """Verify the chain and the bundle; loading equals replaying, at every version."""
    assert ledger.verify(execution_id).ok
    assert verify_bundle(ledger.export(execution_id)).ok
    app = ledger._app
    events = app.read_events(execution_id)
    for version in range(1, len(events) + 1):
        replayed = app.rebuild(execution_id, events[:version]).state()
        assert ledger.get(execution_id, version=version) == replayed


async def run_case(case: Case) -> None:
    async with WorkflowEngine("memory://") as engine:
        state = await engine.run_workflow(case.definition, case.input, timeout=5)
        ledger = engine.ledger
        execution_id = state.execution_id
        assert ledger.get(execution_id) == state  # sealed, and read back open
        if case.forget:
            ledger.forget_subject(str(case.input["subject"]), "dpo", "erasure request")
        if case.purge:
            later = datetime.now(UTC) + timedelta(days=2)
            assert len(ledger.purge("ops", "retention", now=later)) == 1
        check_history(ledger, execution_id)
        after = ledger.get(execution_id)
        assert (after.input, after.outputs) == redacted(case, state)
        assert after.status is state.status


@settings(
    max_examples=max(200, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=cases())
def test_shredding_and_purge_never_break_verification_or_replay(case: Case) -> None:
    event(f"forget={case.forget}, retained={case.retained}, purge={case.purge}")
    event(f"personal outputs: {len(case.personal_outputs)}")
    asyncio.run(run_case(case))
