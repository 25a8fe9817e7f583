"""Random workflows and random action behaviour, for property tests run on a real engine.

The strategies generate small workflows (2 to 7 steps) in both definition formats:
DAGs with parallel branches and joins, conditional edges on ``output``/``status``/
``input``, step guards, retries (tiny intervals, no jitter), timeouts,
``continue_on_error``, compensations whose parameters read the step's own output,
``${...}`` references to upstream steps, and parameters that read ``${input.need}``,
which the input may lack. Every generated definition loads.

API:

- :func:`workflow_runs` returns a strategy of :class:`WorkflowRun`: ``definition`` (a
  plain dict), ``behaviours`` (:class:`Behaviours`: what each step's action does on each
  attempt) and ``input``. A run unpacks as ``definition, behaviours, input_data = run``;
  ``shape`` keeps the generated structure for :func:`expected_outcome`.
- :meth:`Behaviours.registry` returns a fresh ``ActionRegistry`` (actions ``work`` and
  ``undo``) and the :class:`CallLog` its actions append to. Actions are deterministic
  functions of (step id, attempt), where the attempt is the n-th call of that step's
  action in the registry's lifetime (the recorded attempt number, as long as no attempt
  is interrupted).
- :func:`command_schedules` returns a strategy of operators' commands (cancel, pause,
  resume), each issued once the execution has saved a given number of events.
- :func:`expected_outcome` predicts each step's final status, attempts and output when
  the outcome does not depend on timing (no step fails the execution), else None.
- ``running`` (in :mod:`tests.property.engine_runs`) runs a :class:`WorkflowRun` on a
  real ``WorkflowEngine`` until it ends, issuing the commands of a schedule on the way,
  and yields an ``EngineRun`` with the engine still open.

Strategies draw sizes first and use ``lists``/``sampled_from`` with the simplest choice
first, so a failing example shrinks to few steps, no options and succeeding actions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from hypothesis import strategies as st

from flowledger import (
    ActionRegistry,
    NonRetryableError,
    RetryPolicy,
)
from flowledger.engine.invocation import current_step_id

TRIGGER = "t"
"""The id of the graph format's trigger node, when one is generated."""

NEED = {"token": "given later"}
"""The value of ``input.need``, the input a run may lack and be resumed with."""

FAST_DEFAULT_RETRY = RetryPolicy(
    max_attempts=2, initial_interval=0.0, backoff=1.0, max_interval=0.0, jitter=0.0
)
"""The engine-wide retry policy runs use: steps without ``retry`` get two quick attempts."""

T = TypeVar("T")

Holds = Callable[[Any, str, Mapping[str, Any]], bool]
"""What a condition means: ``(source output, source status, execution input) -> bool``."""


class Kind(StrEnum):
    """What one attempt of an action does."""

    SUCCEED = "succeed"
    TRANSIENT = "transient"
    """Raises a retryable error."""
    PERMANENT = "permanent"
    """Raises ``NonRetryableError``: the step fails at once."""
    DECLINED = "declined"
    """Raises ``Declined``: permanent where the step's retry lists it, else retryable."""
    TIME_OUT = "time_out"
    """Awaits a future that never resolves: the step's timeout ends the attempt."""


class TransientFailure(Exception):
    """A failure that another attempt may not meet."""


class Declined(Exception):
    """A failure some steps list in ``retry.non_retryable``."""


@dataclass(frozen=True)
class Outcome:
    """One attempt's behaviour; ``value`` and ``data`` make up a successful output."""

    kind: Kind
    value: int = 0
    data: Any = None


@dataclass(frozen=True)
class Call:
    """One call of an action, as the action saw it."""

    step_id: str
    attempt: int
    parameters: dict[str, Any]
    compensation: bool


@dataclass
class CallLog:
    """Every call of a registry's actions, in order."""

    calls: list[Call] = field(default_factory=list)

    def attempts(self, step_id: str) -> int:
        """Return how many times the step's action (not its compensation) was called."""
        return sum(1 for c in self.calls if c.step_id == step_id and not c.compensation)

    def compensated(self) -> list[str]:
        """Return the steps whose compensating action was called, in call order."""
        return [c.step_id for c in self.calls if c.compensation]


@dataclass(frozen=True)
class Behaviours:
    """What each step's action does on each attempt, and whether its compensation works.

    Attributes:
        attempts: Step id to the outcomes of attempts 1, 2, ...; later attempts repeat
            the last outcome.
        compensations: Step id to True when its compensating action succeeds.
    """

    attempts: Mapping[str, tuple[Outcome, ...]]
    compensations: Mapping[str, bool]

    def outcome(self, step_id: str, attempt: int) -> Outcome:
        """Return what attempt ``attempt`` (from 1) of the step's action does."""
        script = self.attempts[step_id]
        return script[min(attempt, len(script)) - 1]

    def output(self, step_id: str, attempt: int, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """Return the output of a successful attempt, given the parameters it received."""
        outcome = self.outcome(step_id, attempt)
        return {"v": outcome.value, "data": outcome.data, "got": dict(parameters)}

    def registry(self) -> tuple[ActionRegistry, CallLog]:
        """Return a fresh registry with the actions ``work`` and ``undo``, and their log."""
        registry = ActionRegistry()
        log = CallLog()

        async def work(**parameters: Any) -> dict[str, Any]:
            step_id = current_step_id() or ""
            attempt = log.attempts(step_id) + 1
            log.calls.append(Call(step_id, attempt, parameters, compensation=False))
            kind = self.outcome(step_id, attempt).kind
            if kind is Kind.TRANSIENT:
                raise TransientFailure(f"{step_id} attempt {attempt}")
            if kind is Kind.PERMANENT:
                raise NonRetryableError(f"{step_id} attempt {attempt}")
            if kind is Kind.DECLINED:
                raise Declined(f"{step_id} attempt {attempt}")
            if kind is Kind.TIME_OUT:
                await asyncio.get_running_loop().create_future()  # never resolved
            return self.output(step_id, attempt, parameters)

        async def undo(**parameters: Any) -> dict[str, Any]:
            step_id = current_step_id() or ""
            log.calls.append(Call(step_id, 1, parameters, compensation=True))
            if not self.compensations[step_id]:
                raise TransientFailure(f"compensating {step_id}")
            return {"undone": step_id}

        registry.action("work")(work)
        registry.action("undo")(undo)
        return registry, log


# -- the shape of a workflow ------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """An incoming edge: its source, its condition's text, and what the text means."""

    source: str
    condition: str | None = None
    holds: Holds | None = field(default=None, compare=False)
    needs_completed: bool = False
    """The condition is false unless the source COMPLETED."""


@dataclass(frozen=True)
class Retry:
    """A step's retry policy, as generated."""

    max_attempts: int
    initial_interval: float
    lists_declined: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the ``retry`` key of a definition."""
        retry: dict[str, Any] = {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "max_interval": 0.01,
            "jitter": 0,
        }
        if self.lists_declined:
            retry["non_retryable"] = ["Declined"]
        return retry


@dataclass(frozen=True)
class StepShape:
    """One generated step (an action step; the trigger is not one)."""

    id: str
    edges: tuple[Edge, ...]
    implicit: bool
    """Steps format: no ``depends_on`` key (the step runs after the one before it)."""
    guard: str | None
    guard_holds: Callable[[Mapping[str, Any]], bool] | None = field(compare=False)
    continue_on_error: bool
    retry: Retry | None
    timeout: float | None
    compensate: bool
    parameters: Mapping[str, Any]

    @property
    def max_attempts(self) -> int:
        """Attempts in all under the step's effective policy."""
        return (self.retry or _DEFAULT_RETRY).max_attempts

    def body(self) -> dict[str, Any]:
        """Return the step's keys other than ``id`` and ``depends_on``."""
        body: dict[str, Any] = {"action": "work", "parameters": dict(self.parameters)}
        if self.guard is not None:
            body["condition"] = self.guard
        if self.continue_on_error:
            body["continue_on_error"] = True
        if self.retry is not None:
            body["retry"] = self.retry.to_dict()
        if self.timeout is not None:
            body["timeout"] = self.timeout
        if self.compensate:
            own = {"of": f"${{{self.id}.output.v}}", "whole": f"${{{self.id}.output}}"}
            body["compensate"] = {"action": "undo", "parameters": own}
        return body


_DEFAULT_RETRY = Retry(FAST_DEFAULT_RETRY.max_attempts, 0.0, lists_declined=False)


@dataclass(frozen=True)
class WorkflowShape:
    """A generated workflow: its format and its steps, sources before targets."""

    graph: bool
    trigger: bool
    reverse_nodes: bool
    steps: tuple[StepShape, ...]

    def definition(self) -> dict[str, Any]:
        """Return the definition, in the steps format or the graph format."""
        if not self.graph:
            steps = []
            for step in self.steps:
                written = {"id": step.id, **step.body()}
                if not step.implicit:
                    written["depends_on"] = [_dependency(edge) for edge in step.edges]
                steps.append(written)
            return {"id": "random", "steps": steps}
        nodes: list[dict[str, Any]] = [{"id": TRIGGER, "type": "trigger"}] if self.trigger else []
        connections = []
        for step in self.steps:
            nodes.append({"id": step.id, "config": step.body()})
            for edge in step.edges:
                connection = {"source": edge.source, "target": step.id}
                if edge.condition is not None:
                    connection["condition"] = edge.condition
                connections.append(connection)
        # Either order: the order of steps comes from the connections alone.
        return {
            "id": "random-graph",
            "nodes": nodes[::-1] if self.reverse_nodes else nodes,
            "connections": connections,
        }

    def step(self, step_id: str) -> StepShape:
        """Return the step with this id."""
        return next(step for step in self.steps if step.id == step_id)


def _dependency(edge: Edge) -> str | dict[str, str]:
    return (
        edge.source
        if edge.condition is None
        else {"step": edge.source, "condition": edge.condition}
    )


@dataclass(frozen=True)
class WorkflowRun:
    """A definition, what its actions do, and the execution input.

    Unpacks as ``definition, behaviours, input_data = run``.

    Attributes:
        definition: The definition as a plain dict (it loads with ``load_definition``).
        behaviours: What each step's action does on each attempt.
        input: The execution input: ``k`` (0 to 2), and ``need`` unless it is missing.
        shape: The generated structure, for :func:`expected_outcome`.
        concurrency: A ``max_concurrent_steps`` for the engine (1 to 4).
    """

    definition: dict[str, Any]
    behaviours: Behaviours
    input: dict[str, Any]
    shape: WorkflowShape = field(repr=False)
    concurrency: int = 1

    def __iter__(self) -> Iterator[Any]:
        return iter((self.definition, self.behaviours, self.input))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Show what reproduces the run, as Hypothesis reports a failing example."""
        fields = {
            "definition": self.definition,
            "behaviours": self.behaviours,
            "input": self.input,
            "concurrency": self.concurrency,
        }
        with printer.group(4, "WorkflowRun(", ")"):
            for index, (name, value) in enumerate(fields.items()):
                if index:
                    printer.text(",")
                printer.breakable()
                printer.text(f"{name}=")
                printer.pretty(value)

    @property
    def needs_input(self) -> bool:
        """True when a step reads ``${input.need}``."""
        return any("need" in step.parameters for step in self.shape.steps)


# -- strategies ---------------------------------------------------------------------------

_KEYS = st.sampled_from(["a", "b", "_type_", "_data_", "é"])
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(_KEYS, inner, max_size=2),
    max_leaves=4,
)
"""Small JSON values, with the keys the store's transcoder uses for its own markers."""


def _edges_from(source: str, n: int) -> list[Edge]:
    """Every kind of edge from ``source``, the unconditional one first."""
    if source == TRIGGER:  # the trigger's output is the execution input
        return [
            Edge(source),
            Edge(source, f"output.k > {n}", lambda out, status, given: out["k"] > n),
            Edge(source, "status == 'COMPLETED'", lambda out, status, given: True),
        ]
    return [
        Edge(source),
        Edge(
            source,
            f"status == 'COMPLETED' and output.v > {n}",
            lambda out, status, given: status == "COMPLETED" and out["v"] > n,
            needs_completed=True,
        ),
        Edge(source, "status == 'FAILED'", lambda out, status, given: status == "FAILED"),
        Edge(
            source,
            f"status == 'COMPLETED' and output.v != {n}",
            lambda out, status, given: status == "COMPLETED" and out["v"] != n,
            needs_completed=True,
        ),
        Edge(source, f"${{input.k}} >= {n}", lambda out, status, given: given["k"] >= n),
        Edge(
            source,
            f"steps.{source}.status != 'FAILED'",
            lambda out, status, given: status != "FAILED",
        ),
    ]


def _guards(n: int) -> list[tuple[str | None, Callable[[Mapping[str, Any]], bool] | None]]:
    return [
        (None, None),
        (f"input.k > {n}", lambda given: given["k"] > n),
        (f"input.k != {n}", lambda given: given["k"] != n),
    ]


def _pick(draw: st.DrawFn, choices: list[T]) -> T:
    """Draw the first choice (the plainest) half of the time, else any other."""
    if len(choices) == 1 or not draw(st.booleans()):
        return choices[0]
    return choices[draw(st.integers(1, len(choices) - 1))]


def _references(
    draw: st.DrawFn, edges: tuple[Edge, ...], ancestors: list[str], steps: dict[str, StepShape]
) -> dict[str, Any]:
    """Parameters reading upstream steps; ``${x.output.v}`` only where x surely completed."""
    candidates = ["${input.k}", "$${not a reference}"]
    for source in ancestors:
        candidates += [
            f"${{{source}.status}}",
            f"${{{source}.output}}",
            f"{source}: ${{{source}.status}}",
        ]
    if len(edges) == 1 and edges[0].source != TRIGGER:
        (edge,) = edges
        if edge.needs_completed or not steps[edge.source].continue_on_error:
            candidates += [f"${{{edge.source}.output.v}}", f"${{{edge.source}.output.data}}"]
    chosen = draw(st.lists(st.sampled_from(candidates), max_size=2, unique=True))
    return {f"r{index}": reference for index, reference in enumerate(chosen)}


@st.composite
def workflow_shapes(
    draw: st.DrawFn,
    *,
    formats: tuple[str, ...] = ("steps", "graph"),
    min_steps: int = 2,
    max_steps: int = 7,
    triggers: bool = True,
    missing_input: bool = True,
) -> WorkflowShape:
    """Generate the structure of a workflow (see :func:`workflow_runs`)."""
    count = draw(st.integers(min_steps, max_steps))
    graph = draw(st.sampled_from(formats)) == "graph"
    trigger = graph and triggers and draw(st.booleans())
    steps: dict[str, StepShape] = {}
    ancestors: dict[str, set[str]] = {TRIGGER: set()}
    for index in range(count):
        step_id = f"s{index}"
        earlier = list(steps) + ([TRIGGER] if trigger else [])
        sources = (
            draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        )
        edges = tuple(_pick(draw, _edges_from(s, draw(st.integers(0, 3)))) for s in sources)
        implicit = (
            not graph and index > 0 and edges == (Edge(f"s{index - 1}"),) and draw(st.booleans())
        )
        ancestors[step_id] = set(sources).union(*(ancestors[s] for s in sources))
        parameters: dict[str, Any] = {"n": index}
        parameters |= _references(draw, edges, sorted(ancestors[step_id]), steps)
        if missing_input and draw(st.integers(0, 4)) == 4:
            parameters["need"] = "${input.need}"
        guard, guard_holds = _pick(draw, _guards(draw(st.integers(0, 2))))
        retry = draw(
            st.none()
            | st.builds(
                Retry,
                max_attempts=st.integers(1, 3),
                initial_interval=st.sampled_from([0.0, 0.001, 0.005]),
                lists_declined=st.booleans(),
            )
        )
        steps[step_id] = StepShape(
            id=step_id,
            edges=edges,
            implicit=implicit,
            guard=guard,
            guard_holds=guard_holds,
            continue_on_error=draw(st.integers(0, 3)) == 3,
            retry=retry,
            timeout=draw(st.none() | st.sampled_from([0.01, 0.02])),
            compensate=draw(st.booleans()),
            parameters=parameters,
        )
    return WorkflowShape(graph, trigger, draw(st.booleans()), tuple(steps.values()))


def _scripts(draw: st.DrawFn, step: StepShape) -> tuple[Outcome, ...]:
    # Success is the most frequent outcome (and the one examples shrink to), so that
    # runs often get far enough for commands, joins and rollbacks to matter.
    kinds = [*[Kind.SUCCEED] * 5, Kind.TRANSIENT, Kind.TRANSIENT, Kind.PERMANENT, Kind.DECLINED]
    if step.timeout is not None:
        kinds.append(Kind.TIME_OUT)
    outcomes = []
    for _ in range(draw(st.integers(1, 3))):
        kind = kinds[draw(st.integers(0, len(kinds) - 1))]
        value = draw(st.integers(0, 4)) if kind is Kind.SUCCEED else 0
        data = draw(JSON_VALUES) if kind is Kind.SUCCEED else None
        outcomes.append(Outcome(kind, value, data))
    return tuple(outcomes)


@st.composite
def workflow_runs(
    draw: st.DrawFn,
    *,
    formats: tuple[str, ...] = ("steps", "graph"),
    min_steps: int = 2,
    max_steps: int = 7,
    triggers: bool = True,
    missing_input: bool = True,
    input_missing: bool | None = None,
    failures: bool = True,
) -> WorkflowRun:
    """Generate a workflow, what its actions do on each attempt, and its input.

    Args:
        formats: The definition formats to draw from (``"steps"``, ``"graph"``).
        min_steps: Fewest action steps.
        max_steps: Most action steps.
        triggers: Whether graph-format workflows may start with a trigger node.
        missing_input: Whether steps may read ``${input.need}``.
        input_missing: True: the input lacks ``need``; False: it has it; None: draw.
        failures: False keeps only runs in which no step fails the execution (every
            step that runs completes, or fails with ``continue_on_error``), so that
            the outcome does not depend on timing (see :func:`expected_outcome`).
    """
    shape = draw(
        workflow_shapes(
            formats=formats,
            min_steps=min_steps,
            max_steps=max_steps,
            triggers=triggers,
            missing_input=missing_input,
        )
    )
    attempts = {step.id: _scripts(draw, step) for step in shape.steps}
    if not failures:
        attempts = {
            step.id: _finishing(step, script)
            for step, script in zip(shape.steps, attempts.values(), strict=True)
        }
    compensations = {step.id: draw(st.integers(0, 4)) < 4 for step in shape.steps}
    given: dict[str, Any] = {"k": draw(st.integers(0, 2))}
    missing = draw(st.booleans()) if input_missing is None else input_missing
    if not missing:
        given["need"] = NEED
    return WorkflowRun(
        definition=shape.definition(),
        behaviours=Behaviours(attempts, compensations),
        input=given,
        shape=shape,
        concurrency=draw(st.integers(1, 4)),
    )


def _finishing(step: StepShape, script: tuple[Outcome, ...]) -> tuple[Outcome, ...]:
    """Make the script end in success within the step's attempts, unless it may fail."""
    if step.continue_on_error or _settle(step, script)[0] == "COMPLETED":
        return script
    # Failures that end the step at once become retryable ones, then the last attempt
    # succeeds.
    kept = [
        Outcome(Kind.TRANSIENT) if _permanent(step, outcome) else outcome
        for outcome in script[: step.max_attempts - 1]
    ]
    return (*kept, Outcome(Kind.SUCCEED, len(kept), None))


@dataclass(frozen=True)
class Command:
    """An operator's command, issued once ``after`` events of the execution are saved.

    A command whose moment never comes is issued once the execution rests.
    """

    kind: str
    after: int
    rollback: bool = False
    with_input: bool = False


@st.composite
def command_schedules(
    draw: st.DrawFn, max_moments: int = 3, max_after: int = 15
) -> tuple[Command, ...]:
    """Generate operators' commands: at up to ``max_moments`` moments (a number of saved
    events, 1 to ``max_after``), one to three commands issued together, racing.
    """
    commands: list[Command] = []
    for _ in range(draw(st.integers(0, max_moments))):
        after = draw(st.integers(1, max_after))
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["cancel", "pause", "resume"]))
            commands.append(Command(kind, after, draw(st.booleans()), draw(st.booleans())))
    return tuple(commands)


# -- the expected outcome ---------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """Each step's final status, attempts, and scripted output (``v``, ``data``)."""

    statuses: dict[str, str]
    attempts: dict[str, int]
    outputs: dict[str, tuple[int, Any]]


def _permanent(step: StepShape, outcome: Outcome) -> bool:
    """Whether a failed attempt ends the step at once, whatever attempts are left."""
    return outcome.kind is Kind.PERMANENT or (
        outcome.kind is Kind.DECLINED and step.retry is not None and step.retry.lists_declined
    )


def _settle(step: StepShape, script: tuple[Outcome, ...]) -> tuple[str, int]:
    """Return the final status of a step that runs, and how many attempts it takes."""
    attempt = 0
    while True:
        attempt += 1
        outcome = script[min(attempt, len(script)) - 1]
        if outcome.kind is Kind.SUCCEED:
            return "COMPLETED", attempt
        if _permanent(step, outcome) or attempt >= step.max_attempts:
            return "FAILED", attempt


def expected_outcome(run: WorkflowRun) -> Expected | None:
    """Predict every step's end, or None when a step fails the execution.

    With no operator's commands and every missing input provided on resume, an
    execution in which every step that runs either completes or fails with
    ``continue_on_error`` ends COMPLETED, whatever the timing: which branches run
    follows from the scripted outputs and statuses alone (dead-path elimination).
    """
    given = {**run.input, "need": NEED}
    statuses: dict[str, str] = {TRIGGER: "COMPLETED"}
    outputs: dict[str, Any] = {TRIGGER: given}
    expected = Expected({}, {}, {})
    for step in run.shape.steps:
        active = not step.edges or any(
            _active(edge, statuses, outputs, given, run) for edge in step.edges
        )
        if not active or (step.guard_holds is not None and not step.guard_holds(given)):
            statuses[step.id] = "SKIPPED"
            expected.statuses[step.id] = "SKIPPED"
            expected.attempts[step.id] = 0
            continue
        script = run.behaviours.attempts[step.id]
        status, attempts = _settle(step, script)
        if status == "FAILED" and not step.continue_on_error:
            return None
        statuses[step.id] = status
        expected.statuses[step.id] = status
        expected.attempts[step.id] = attempts
        if status == "COMPLETED":
            final = script[min(attempts, len(script)) - 1]
            outputs[step.id] = {"v": final.value, "data": final.data}
            expected.outputs[step.id] = (final.value, final.data)
    return expected


def _active(
    edge: Edge,
    statuses: dict[str, str],
    outputs: dict[str, Any],
    given: dict[str, Any],
    run: WorkflowRun,
) -> bool:
    status = statuses[edge.source]
    if status == "SKIPPED":
        return False
    if status == "FAILED" and not run.shape.step(edge.source).continue_on_error:
        return False
    return edge.holds is None or edge.holds(outputs.get(edge.source), status, given)
