"""Properties of incremental planning, over the random runs of the planning properties.

Every plan of every run is checked twice more: against a plan of a copy of the
execution (whose steps the planner has to read from scratch), and, once it is applied,
against planning again right away, which must decide nothing unless the plan said
``replan``, and must wait for the same retry while the execution runs.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from flowledger.domain.status import ExecutionStatus
from flowledger.engine.decisions import Plan, RecordCondition, SkipStep, StartStep
from flowledger.engine.frontier import Frontier, frontier_of
from flowledger.engine.planning import plan
from tests.engine.test_planning_incremental import FIELDS
from tests.property.test_planning_properties import Edge, Run, Scenario, Spec, scenarios

BROKEN = "output.nothing > 0"
"""A condition that cannot be evaluated on any output the runs produce."""
BRANCHES = ("output.v < 0", "output.v < 0", "output.v >= 0", BROKEN)
"""Conditions of the edges of :func:`branching_scenarios`: mostly false, some broken."""


@st.composite
def branching_scenarios(draw: st.DrawFn) -> Scenario:
    """A root whose successors are decided by conditions, often false, sometimes broken.

    Once the root completes, one pass decides its successors in order: a broken
    condition met after skipping others fails the pass, and the plan holds only the
    skips and says ``replan``.
    """
    specs = [Spec("s0", (), None, False, draw(st.booleans()), False, False)]
    for index in range(1, draw(st.integers(2, 6))):
        later = draw(st.sets(st.sampled_from(range(1, index)), max_size=1)) if index > 1 else set()
        sources = ["s0", *(f"s{j}" for j in sorted(later))]
        edges = tuple(Edge(source, draw(st.sampled_from(BRANCHES))) for source in sources)
        specs.append(Spec(f"s{index}", edges, None, False, draw(st.booleans()), False, False))
    ids = [spec.id for spec in specs]
    return Scenario(
        graph=draw(st.booleans()),
        trigger=False,
        specs=tuple(specs),
        input={"k": 0},
        attempts={step_id: ({"v": draw(st.integers(0, 2))},) for step_id in ids},
        delays={step_id: draw(st.integers(0, 1)) for step_id in ids},
        compensations={step_id: {"ok": 1} for step_id in ids},
        cancel=None,
        pause_at=None,
        crash_at=None,
        max_starts=draw(st.none() | st.integers(1, 2)),
    )


class CheckedRun(Run):
    """A run that checks each plan against a fresh read, and planning again after it."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        self.last: tuple[Plan, datetime, dict[str, Any]] | None = None
        self.replans = 0
        planner = self.driver.plan

        def checked(**options: Any) -> Plan:
            planned = planner(**options)
            self.check_fresh(planned, options)
            self.last = (planned, self.driver.now, options)
            return planned

        self.driver.plan = checked  # type: ignore[method-assign]

    def check_fresh(self, planned: Plan, options: dict[str, Any]) -> None:
        """The plan equals one of a copy, and the frontier one read from scratch."""
        driver = self.driver
        fresh_copy = copy.deepcopy(driver.execution)
        assert plan(fresh_copy, driver.definition, driver.now, **options) == planned
        if driver.execution.is_terminal:
            return  # a terminal execution is planned without reading its steps
        followed = frontier_of(driver.execution, driver.definition)
        fresh = Frontier(driver.definition)
        fresh.refresh(fresh_copy)
        for name in FIELDS:
            assert getattr(followed, name) == getattr(fresh, name), name

    def finish_in_flight(self) -> bool:
        # Called right after the last plan's decisions were applied.
        assert self.last is not None
        planned, planned_at, options = self.last
        if planned.replan:
            self.replans += 1
            assert all(isinstance(d, RecordCondition | SkipStep) for d in planned.decisions)
        elif planned.decisions:
            self.check_nothing_left(planned, planned_at, options)
        return super().finish_in_flight()

    def check_nothing_left(self, planned: Plan, at: datetime, options: dict[str, Any]) -> None:
        """Planning again as the engine would (same time, the starts left) decides nothing."""
        started = {d.step_id for d in planned.decisions if isinstance(d, StartStep)}
        max_starts = options["max_starts"]
        again = plan(
            self.execution,
            self.driver.definition,
            at,
            max_starts=None if max_starts is None else max_starts - len(started),
            interrupted=options["interrupted"] - started,
        )
        assert again.decisions == (), (planned, again)
        running = self.execution.status is ExecutionStatus.RUNNING
        assert again.wake_at == (planned.wake_at if running else None)


@settings(deadline=None, max_examples=300)
@given(scenarios() | branching_scenarios())
def test_every_plan_is_the_plan_of_a_fresh_read_and_leaves_nothing_to_decide_now(
    scenario: Scenario,
) -> None:
    run = CheckedRun(scenario)
    run.go()
    assert run.execution.is_terminal
    event(f"plans that said replan: {min(run.replans, 2)}")
