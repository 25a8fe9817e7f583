"""Properties of the planner, over random workflows and random action outcomes.

Each example generates a DAG (steps format or graph format, with conditional edges,
guards, ``continue_on_error``, compensations, inputs that may be missing and a trigger),
the outcome of every attempt of every step (complete, fail and retry, fail for good),
how long each attempt stays in flight, perhaps a cancel, a pause or a crash (the
attempts in flight are lost and recorded as interrupted), and perhaps a bound on the
starts per plan. It then drives a real ``Execution`` the way the engine does, applying
every decision to the aggregate one by one, until the execution is terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger.domain import events as ev
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.decisions import CompleteTrigger, Decision, PauseStep, StartStep
from tests.engine.test_planning_driver import Driver, Fail

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "ROLLED_BACK", "ROLLBACK_FAILED"}
AT_REST = {"COMPLETED", "SKIPPED", "CANCELLED", "FAILED", "ROLLED_BACK", "COMPENSATION_FAILED"}
TRIGGER = "t"


@dataclass(frozen=True)
class Edge:
    """An edge as generated: its text, and what its condition means (None: no condition)."""

    source: str
    condition: str | None = None
    holds: Callable[[Any, str], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Spec:
    """One generated step."""

    id: str
    edges: tuple[Edge, ...]
    guard: tuple[str, Callable[[dict[str, Any]], bool]] | None
    continue_on_error: bool
    compensate: bool
    needs_input: bool
    implicit_sequence: bool


@dataclass(frozen=True)
class Scenario:
    """A workflow, its input, and what happens while it runs."""

    graph: bool
    trigger: bool
    specs: tuple[Spec, ...]
    input: dict[str, Any]
    attempts: dict[str, tuple[Any, ...]]
    delays: dict[str, int]
    compensations: dict[str, Any]
    cancel: tuple[int, bool] | None
    pause_at: int | None
    crash_at: int | None
    max_starts: int | None

    def source(self) -> dict[str, Any]:
        return _graph(self) if self.graph else _steps(self)

    @property
    def all_succeed(self) -> bool:
        """True when no cancel comes and every step completes, sooner or later."""
        finals = [outcomes[-1] for outcomes in self.attempts.values()]
        return self.cancel is None and not any(isinstance(final, Fail) for final in finals)


def _options(spec: Spec, sources: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {"sources": [f"${{{source}.status}}" for source in sources]}
    if spec.needs_input:
        parameters["need"] = "${input.need}"
    options: dict[str, Any] = {"action": "work", "parameters": parameters}
    if spec.guard is not None:
        options["condition"] = spec.guard[0]
    if spec.continue_on_error:
        options["continue_on_error"] = True
    if spec.compensate:
        undo = {"was": f"${{{spec.id}.output}}", "v": f"${{{spec.id}.output.v}}"}
        options["compensate"] = {"action": "undo", "parameters": undo}
    return options


def _steps(scenario: Scenario) -> dict[str, Any]:
    steps = []
    for spec in scenario.specs:
        step = {"id": spec.id, **_options(spec, [edge.source for edge in spec.edges])}
        if not spec.implicit_sequence:
            step["depends_on"] = [
                edge.source
                if edge.condition is None
                else {"step": edge.source, "condition": edge.condition}
                for edge in spec.edges
            ]
        steps.append(step)
    return {"id": "random", "steps": steps}


def _graph(scenario: Scenario) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": TRIGGER, "type": "trigger"}] if scenario.trigger else []
    connections = []
    for spec in scenario.specs:
        sources = [edge.source for edge in spec.edges]
        nodes.append({"id": spec.id, "config": _options(spec, sources)})
        for edge in spec.edges:
            connection = {"source": edge.source, "target": spec.id}
            if edge.condition is not None:
                connection["condition"] = edge.condition
            connections.append(connection)
    # Nodes in reverse: the order of steps comes from the connections alone.
    return {"id": "random", "nodes": nodes[::-1], "connections": connections}


def _edge(draw: st.DrawFn, source: str) -> Edge:
    n = draw(st.integers(0, 3))
    kinds: list[Edge] = [
        Edge(source),
        Edge(source, f"output.v > {n}", lambda output, status: output["v"] > n),
        Edge(source, "status == 'FAILED'", lambda output, status: status == "FAILED"),
        Edge(
            source,
            f"status == 'COMPLETED' and output.v != {n}",
            lambda output, status: status == "COMPLETED" and output["v"] != n,
        ),
    ]
    # A trigger's output is the execution input, which has no "v".
    return draw(st.sampled_from(kinds[::2] if source == TRIGGER else kinds))


def _guard(draw: st.DrawFn) -> tuple[str, Callable[[dict[str, Any]], bool]] | None:
    n = draw(st.integers(0, 2))
    guards: list[tuple[str, Callable[[dict[str, Any]], bool]] | None] = [
        None,
        None,
        (f"input.k > {n}", lambda given: given["k"] > n),
        (f"input.k != {n}", lambda given: given["k"] != n),
    ]
    return draw(st.sampled_from(guards))


def _attempts(draw: st.DrawFn) -> tuple[Any, ...]:
    retries = [Fail(retry_in=draw(st.integers(0, 5))) for _ in range(draw(st.integers(0, 2)))]
    last = draw(st.integers(0, 9))
    final = Fail(message="final") if last < 2 else {"v": draw(st.integers(0, 4))}
    return (*retries, final)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(1, 7))
    graph = draw(st.booleans())
    trigger = graph and draw(st.booleans())
    specs = []
    for index in range(count):
        earlier = [f"s{j}" for j in range(index)] + ([TRIGGER] if trigger else [])
        sources = (
            draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        )
        edges = tuple(_edge(draw, source) for source in sources)
        sequence = (
            not graph and index > 0 and edges == (Edge(f"s{index - 1}"),) and draw(st.booleans())
        )
        specs.append(
            Spec(
                id=f"s{index}",
                edges=edges,
                guard=_guard(draw),
                continue_on_error=draw(st.integers(0, 3)) == 0,
                compensate=draw(st.booleans()),
                needs_input=draw(st.integers(0, 5)) == 0,
                implicit_sequence=sequence,
            )
        )
    ids = [spec.id for spec in specs]
    given_input: dict[str, Any] = {"k": draw(st.integers(0, 2))}
    if draw(st.booleans()):
        given_input["need"] = 0
    cancel = draw(st.none() | st.tuples(st.integers(0, 12), st.booleans()))
    return Scenario(
        graph=graph,
        trigger=trigger,
        specs=tuple(specs),
        input=given_input,
        attempts={step_id: _attempts(draw) for step_id in ids},
        delays={step_id: draw(st.integers(0, 2)) for step_id in ids},
        compensations={
            step_id: Fail(message="undo failed") if draw(st.integers(0, 5)) == 0 else {"ok": 1}
            for step_id in ids
        },
        cancel=cancel,
        pause_at=draw(st.none() | st.integers(0, 12)),
        crash_at=draw(st.none() | st.integers(1, 12)),
        max_starts=draw(st.none() | st.integers(1, 3)),
    )


# -- running a scenario -----------------------------------------------------------------


class Run:
    """Drives one scenario to a terminal status, checking each decision on the way."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.driver = Driver(scenario.source(), scenario.input)
        self.execution = self.driver.execution
        self.waiting: dict[tuple[str, StepStatus, int], int] = {}
        self.interrupted: set[str] = set()

    def go(self, limit: int = 400) -> None:
        for round_ in range(limit):
            self.intervene(round_)
            planned = self.driver.plan(
                max_starts=self.scenario.max_starts, interrupted=frozenset(self.interrupted)
            )
            self.driver.now += timedelta(seconds=1)
            for decision in planned.decisions:
                self.check_may_start(decision)
                decision.apply(self.execution, self.driver.now)
                # Once started again, paused or cancelled, a step is no longer interrupted.
                self.interrupted.discard(getattr(decision, "step_id", ""))
            finished = self.finish_in_flight()
            if planned.decisions or finished:
                continue
            if self.execution.is_terminal:
                return
            if planned.wake_at is not None and not planned.in_flight:
                self.driver.now = max(planned.wake_at, self.driver.now)
            elif not planned.in_flight:
                assert self.execution.status is ExecutionStatus.PAUSED, "stuck while running"
                self.execution.provide_input({"need": 1}, None, self.driver.now)
                self.execution.resume(None, self.driver.now)
        raise AssertionError(f"not terminal after {limit} rounds")

    def intervene(self, round_: int) -> None:
        execution, now = self.execution, self.driver.now
        if execution.is_terminal:
            return
        cancel = self.scenario.cancel
        if cancel is not None and cancel[0] == round_:
            execution.request_cancel("test", None, now, rollback=cancel[1])
        if self.scenario.pause_at == round_ and execution.status is ExecutionStatus.RUNNING:
            execution.pause("operator", now)
        if self.scenario.crash_at == round_:
            # The process died: every attempt in flight is lost, and recovery records it.
            for step_id, step in execution.state().steps.items():
                if step.status is StepStatus.RUNNING:
                    execution.interrupt_step(step_id, now)
                    self.interrupted.add(step_id)

    def check_may_start(self, decision: Decision) -> None:
        """A step starts (or pauses) only once every incoming edge is resolved."""
        if not isinstance(decision, StartStep | CompleteTrigger | PauseStep):
            return
        state = self.execution.state()
        if state.steps[decision.step_id].status is not StepStatus.PENDING:
            return  # a retry, or a start after a resume
        for edge in self.driver.definition.step(decision.step_id).depends_on:
            source = state.steps[edge.source]
            assert source.status in {
                StepStatus.COMPLETED,
                StepStatus.SKIPPED,
                StepStatus.CANCELLED,
            } or (source.status is StepStatus.FAILED and source.not_before is None), (
                f"{decision.step_id} decided while {edge.source} is {source.status}"
            )

    def finish_in_flight(self) -> bool:
        finished = False
        for step_id, step in self.execution.state().steps.items():
            in_flight = {StepStatus.RUNNING, StepStatus.COMPENSATING}
            if step.status not in in_flight or step_id in self.interrupted:
                continue
            key = (step_id, step.status, step.attempts)
            left = self.waiting.setdefault(key, self.scenario.delays.get(step_id, 0))
            if left > 0:
                self.waiting[key] = left - 1
                continue
            finished = True
            if step.status is StepStatus.COMPENSATING:
                self.driver.finish_compensation(step_id, self.scenario.compensations[step_id])
            else:
                self.finish(step_id, step.attempts)
        return finished

    def finish(self, step_id: str, attempt: int) -> None:
        outcomes = self.scenario.attempts[step_id]
        outcome = outcomes[min(attempt, len(outcomes)) - 1]
        # Like the engine: no retry is scheduled once a cancel was asked for.
        if (
            isinstance(outcome, Fail)
            and outcome.retry_in is not None
            and self.execution.cancel_requested
        ):
            outcome = Fail(message="retry refused")
        self.driver.finish(step_id, outcome)


# -- the properties ---------------------------------------------------------------------


@settings(deadline=None)
@given(scenarios())
def test_every_run_ends_terminal_with_every_step_at_rest(scenario: Scenario) -> None:
    run = Run(scenario)
    run.go()
    state = run.execution.state()
    assert state.status.value in TERMINAL
    statuses = {step_id: step.status.value for step_id, step in state.steps.items()}
    assert set(statuses.values()) <= AT_REST, statuses
    if state.status is ExecutionStatus.COMPLETED:
        for step_id, status in statuses.items():
            step = state.steps[step_id]
            assert status in {"COMPLETED", "SKIPPED"} or (
                status == "FAILED"
                and step.not_before is None
                and run.driver.definition.step(step_id).continue_on_error
            )
        assert state.outputs == {
            s: step.output for s, step in state.steps.items() if step.status is StepStatus.COMPLETED
        }


@settings(deadline=None)
@given(scenarios())
def test_conditions_and_skips_are_recorded_once(scenario: Scenario) -> None:
    run = Run(scenario)
    run.go()
    conditions = [(e.source, e.target) for e in run.driver.events(ev.ConditionEvaluated)]
    assert len(conditions) == len(set(conditions))
    skipped = [e.step_id for e in run.driver.events(ev.StepSkipped)]
    assert len(skipped) == len(set(skipped))
    paused = [e.step_id for e in run.driver.events(ev.StepPaused)]
    assert len(paused) == len(set(paused))


@settings(deadline=None)
@given(scenarios())
def test_rollback_compensates_completed_steps_once_in_reverse_completion_order(
    scenario: Scenario,
) -> None:
    run = Run(scenario)
    run.go()
    status = run.execution.status
    completed = [e.step_id for e in run.driver.events(ev.StepCompleted)]
    compensable = {spec.id for spec in scenario.specs if spec.compensate}
    expected = [step_id for step_id in reversed(completed) if step_id in compensable]
    compensated = [e.step_id for e in run.driver.events(ev.CompensationStarted)]
    if status is ExecutionStatus.ROLLED_BACK:
        assert compensated == expected
    elif status is ExecutionStatus.ROLLBACK_FAILED:
        assert compensated == expected[: len(compensated)] and compensated
        assert run.execution.state().steps[compensated[-1]].status is StepStatus.COMPENSATION_FAILED
    else:
        assert compensated == []


@settings(deadline=None)
@given(scenarios())
def test_when_every_step_succeeds_exactly_the_taken_branches_run(scenario: Scenario) -> None:
    run = Run(scenario)
    run.go()
    state = run.execution.state()
    if not scenario.all_succeed:
        return
    assert state.status is ExecutionStatus.COMPLETED
    ran: dict[str, bool] = {TRIGGER: True}
    outputs: dict[str, Any] = {TRIGGER: scenario.input}
    for step_id in run.driver.definition.step_ids:
        if step_id == TRIGGER:
            continue
        spec = next(spec for spec in scenario.specs if spec.id == step_id)
        active = not spec.edges or any(
            ran[edge.source]
            and (edge.holds is None or edge.holds(outputs[edge.source], "COMPLETED"))
            for edge in spec.edges
        )
        ran[step_id] = active and (spec.guard is None or spec.guard[1](scenario.input))
        outputs[step_id] = state.steps[step_id].output
    expected = {s: "COMPLETED" if ran[s] else "SKIPPED" for s in state.steps}
    assert {s: step.status.value for s, step in state.steps.items()} == expected
