"""Properties of definition loading, over random valid definitions in both formats.

A :class:`Plan` is an abstract, valid workflow (a random DAG in topological order, with
parallel roots, joins, conditional edges, references to upstream steps only, retries,
timeouts, compensations and triggers). It is rendered in the steps or the graph format
with a random definition order, random key placement and random explicit defaults.
Mutations turn a valid plan or its rendering into an invalid one.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger.domain.definition import Dependency, WorkflowDefinition, load_definition
from flowledger.errors import DefinitionError, DefinitionProblem

EXAMPLES = settings(max_examples=max(200, settings.default.max_examples), deadline=None)

IDS = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(lambda text: text != "input")
SAFE_TEXT = st.text(
    st.characters(blacklist_characters="$", blacklist_categories=("Cs",)), max_size=8
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner, max_size=3),
    max_leaves=8,
)
SOURCE_CONDITIONS = ["output.ok", "status == 'COMPLETED'", "not error", "result", "output.n > 1"]


@dataclass
class StepSpec:
    id: str
    trigger: bool
    deps: list[tuple[str, str | None]]
    parameters: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    steps: list[StepSpec]
    ancestors: dict[str, set[str]]
    order: list[int]  # definition order: a permutation of range(len(steps))

    def spec(self, step_id: str) -> StepSpec:
        return next(spec for spec in self.steps if spec.id == step_id)


@st.composite
def retries(draw: st.DrawFn) -> dict[str, Any]:
    retry: dict[str, Any] = {}
    if draw(st.booleans()):
        retry["max_attempts"] = draw(st.integers(1, 1000))
    initial = draw(st.none() | st.floats(0, 60))
    if initial is not None:
        retry["initial_interval"] = initial
    if draw(st.booleans()):
        retry["max_interval"] = draw(st.floats(1.0 if initial is None else initial, 31_536_000))
    if draw(st.booleans()):
        retry["backoff"] = draw(st.floats(1, 1000))
    if draw(st.booleans()):
        retry["jitter"] = draw(st.floats(0, 1) | st.booleans())
    if draw(st.booleans()):
        retry["non_retryable"] = draw(st.lists(IDS, unique=True, max_size=3))
    return retry


@st.composite
def step_specs(
    draw: st.DrawFn, step_id: str, earlier: list[str], ancestors: dict[str, set[str]]
) -> StepSpec:
    trigger = draw(st.integers(0, 4)) == 0
    sources = (
        []
        if trigger or not earlier
        else draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
    )
    deps = [
        (
            source,
            draw(st.none() | st.sampled_from([*SOURCE_CONDITIONS, f"${{{source}.output.n}} > 1"])),
        )
        for source in sources
    ]
    upstream = sorted(set(sources).union(*(ancestors[source] for source in sources)))
    spec = StepSpec(step_id, trigger, deps)
    guards = ["input.go", *(f"${{{name}.output.flag}}" for name in upstream)]
    if len(deps) == 1:
        guards += ["output.ok", "status != 'FAILED'"]
    if draw(st.booleans()):
        spec.options["condition"] = draw(st.sampled_from(guards))
    spec.options["name"] = draw(st.none() | SAFE_TEXT)
    spec.options["continue_on_error"] = draw(st.booleans())
    if trigger:
        return spec
    spec.parameters = draw(st.dictionaries(SAFE_TEXT, JSON_VALUES, max_size=3))
    for name in draw(st.lists(st.sampled_from(["input", *upstream]), max_size=2)):
        spec.parameters[f"ref_{name}"] = (
            f"${{{name}.output.v}}" if name != "input" else "${input.x}"
        )
    spec.options["timeout"] = draw(st.none() | st.integers(1, 3600) | st.floats(0.001, 31_536_000))
    spec.options["retry"] = draw(st.none() | retries())
    if draw(st.booleans()):
        spec.options["compensate"] = {
            "action": "undo",
            "parameters": {"id": f"${{{step_id}.output.id}}"},
        }
    return spec


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    ids = draw(st.lists(IDS, min_size=1, max_size=10, unique=True))
    ancestors: dict[str, set[str]] = {}
    steps = []
    for index, step_id in enumerate(ids):
        spec = draw(step_specs(step_id, ids[:index], ancestors))
        ancestors[step_id] = {source for source, _ in spec.deps}.union(
            *(ancestors[s] for s, _ in spec.deps)
        )
        steps.append(spec)
    return Plan(steps, ancestors, draw(st.permutations(range(len(ids)))))


def render_steps(plan: Plan, draw: st.DrawFn) -> dict[str, Any]:
    rendered: list[dict[str, Any]] = []
    previous: str | None = None
    for index in plan.order:
        spec = plan.steps[index]
        item: dict[str, Any] = {"id": spec.id}
        if spec.trigger:
            item["type"] = "trigger"
        else:
            item["action"] = "work"
        if spec.parameters or (not spec.trigger and draw(st.booleans())):
            item["parameters"] = spec.parameters
        implicit = [(previous, None)] if previous is not None and not spec.trigger else []
        if spec.deps != implicit or draw(st.booleans()):
            item["depends_on"] = [
                source if condition is None else {"step": source, "condition": condition}
                for source, condition in spec.deps
            ]
        item.update(_explicit_options(spec, draw))
        rendered.append(item)
        previous = spec.id
    return {"id": "flow", "steps": rendered}


def render_graph(plan: Plan, draw: st.DrawFn) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for index in plan.order:
        spec = plan.steps[index]
        node: dict[str, Any] = {"id": spec.id}
        config: dict[str, Any] = {}
        keys = _explicit_options(spec, draw)
        if not spec.trigger:
            keys["action"] = "work"
        if spec.parameters or not spec.trigger:
            keys["parameters"] = spec.parameters
        for key, value in keys.items():
            (config if draw(st.booleans()) else node)[key] = value
        if spec.trigger:
            node["type"] = "trigger"
        elif draw(st.booleans()):
            node["type"] = "action"
        if config or draw(st.booleans()):
            node["config"] = config
        nodes.append(node)
    targets = draw(st.permutations(plan.steps))
    connections = [
        {"source": source, "target": spec.id}
        | ({} if condition is None else {"condition": condition})
        for spec in targets
        for source, condition in spec.deps
    ]
    return {"id": "flow", "nodes": nodes, "connections": connections}


def _explicit_options(spec: StepSpec, draw: st.DrawFn) -> dict[str, Any]:
    # A default (None, False) may be written out or left out: both must load the same.
    return {
        key: value
        for key, value in spec.options.items()
        if (value is not None and value is not False) or draw(st.booleans())
    }


@st.composite
def rendered(
    draw: st.DrawFn, plan_strategy: st.SearchStrategy[Plan] | None = None
) -> tuple[Plan, dict[str, Any]]:
    plan = draw(plans() if plan_strategy is None else plan_strategy)
    render = draw(st.sampled_from([render_steps, render_graph]))
    return plan, render(plan, draw)


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


def assert_refused(source: Any) -> None:
    try:
        load_definition(source)
    except DefinitionError as error:
        assert error.errors
        for problem in error.errors:
            assert isinstance(problem, DefinitionProblem)
            assert problem.path.startswith("$")
            assert problem.message
    else:
        raise AssertionError("an invalid definition loaded")


# --- valid definitions ------------------------------------------------------------------


@EXAMPLES
@given(rendered())
def test_valid_definitions_load_in_order_and_round_trip(case: tuple[Plan, dict[str, Any]]) -> None:
    plan, source = case
    loaded = load_definition(source)
    # Every planned step and edge, in order (per step: its depends_on/connection order).
    assert sorted(loaded.step_ids) == sorted(spec.id for spec in plan.steps)
    for spec in plan.steps:
        step = loaded.step(spec.id)
        assert step.depends_on == tuple(Dependency(*dependency) for dependency in spec.deps)
        assert step.kind == ("trigger" if spec.trigger else "action")
    # The steps are a topological order.
    position = {step_id: index for index, step_id in enumerate(loaded.step_ids)}
    for step in loaded.steps:
        assert all(position[source] < position[step.id] for source in step.upstream_ids)
    # The canonical form loads back equal, with the same hash and order.
    again = load_definition(loaded.to_dict())
    assert again == loaded
    assert again.hash == loaded.hash
    assert again.step_ids == loaded.step_ids
    assert load_definition(json.dumps(loaded.to_dict())).hash == loaded.hash


@EXAMPLES
@given(rendered(), st.randoms(use_true_random=False))
def test_key_order_never_changes_the_hash(
    case: tuple[Plan, dict[str, Any]], rng: random.Random
) -> None:
    source = case[1]
    loaded: WorkflowDefinition = load_definition(source)
    assert load_definition(shuffled(source, rng)).hash == loaded.hash


# --- invalid definitions ----------------------------------------------------------------


@st.composite
def broken_plans(draw: st.DrawFn) -> Plan:
    plan = draw(plans())
    steps = [
        replace(
            spec, deps=list(spec.deps), parameters=dict(spec.parameters), options=dict(spec.options)
        )
        for spec in plan.steps
    ]
    target = draw(st.sampled_from(steps))
    mutation = draw(
        st.sampled_from(["cycle", "duplicate", "unknown", "timeout", "attempts", "downstream"])
    )
    order = list(plan.order)
    if mutation == "cycle":
        # Make an ancestor (or the step itself) wait for the step: a cycle or a self-loop.
        ancestor = draw(st.sampled_from(sorted(plan.ancestors[target.id] | {target.id})))
        next(spec for spec in steps if spec.id == ancestor).deps.append((target.id, None))
    elif mutation == "duplicate":
        steps.append(replace(target, deps=[]))
        order.append(len(steps) - 1)
    elif mutation == "unknown":
        target.deps.append(("no-such-step", None))
    elif mutation == "timeout":
        target.options["timeout"] = draw(
            st.sampled_from([0, -1, 0.0, -0.0]) | st.floats(max_value=0)
        )
    elif mutation == "attempts":
        target.options["retry"] = {**(target.options.get("retry") or {}), "max_attempts": 0}
    else:
        outside = sorted(spec.id for spec in steps if spec.id not in plan.ancestors[target.id])
        target.parameters["zz"] = f"${{{draw(st.sampled_from(outside))}.output}}"
    return Plan(steps, plan.ancestors, order)


@EXAMPLES
@given(rendered(broken_plans()))
def test_semantic_mutations_are_always_refused(case: tuple[Plan, dict[str, Any]]) -> None:
    assert_refused(case[1])


NULL_OK = {
    "name",
    "description",
    "version",
    "input_schema",
    "output_schema",
    "parameters",
    "condition",
    "timeout",
    "retry",
    "compensate",
    "config",
}
NUMBER_OK = {
    "version",
    "timeout",
    "max_attempts",
    "initial_interval",
    "backoff",
    "max_interval",
    "jitter",
}
FREE_FORM = {"parameters", "input_schema", "output_schema"}


def structural_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in children:
        found.append((*path, key))
        if key not in FREE_FORM:
            found.extend(structural_paths(item, (*path, key)))
    return found


@EXAMPLES
@given(rendered(), st.data())
def test_a_wrong_type_anywhere_is_refused(
    case: tuple[Plan, dict[str, Any]], data: st.DataObject
) -> None:
    source = json.loads(json.dumps(case[1]))
    path = data.draw(st.sampled_from(structural_paths(source)))
    key = path[-1]
    wrong: list[Any] = [[1]]
    if key not in NULL_OK:
        wrong.append(None)
    if key not in NUMBER_OK:
        wrong.append(42)
    parent = source
    for part in path[:-1]:
        parent = parent[part]
    parent[key] = data.draw(st.sampled_from(wrong))
    assert_refused(source)


@EXAMPLES
@given(rendered(), st.data())
def test_truncated_json_is_refused(case: tuple[Plan, dict[str, Any]], data: st.DataObject) -> None:
    text = json.dumps(case[1])
    assert_refused(text[: data.draw(st.integers(0, len(text) - 1))])
