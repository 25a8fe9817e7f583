"""The steps and graph formats, normalisation, immutability and the canonical form."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from flowledger.domain.canonical import canonical_json, sha256_hex
from flowledger.domain.definition import (
    Compensation,
    Dependency,
    RetryPolicy,
    StepDefinition,
    WorkflowDefinition,
    load_definition,
)
from flowledger.domain.definition.building import build_retry
from flowledger.domain.definition.formats import normalise_condition
from flowledger.errors import DefinitionError


def steps_def(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "w", **top, "steps": list(steps)}


def step(step_id: str, **keys: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "noop", **keys}


def deps(definition: WorkflowDefinition) -> dict[str, tuple[Dependency, ...]]:
    return {each.id: each.depends_on for each in definition.steps}


def paths(source: Any) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source)
    return [problem.path for problem in caught.value.errors]


# --- steps format -------------------------------------------------------------------------


def test_a_list_reads_as_a_sequence() -> None:
    loaded = load_definition(steps_def(step("a"), step("b"), step("c")))
    assert deps(loaded) == {"a": (), "b": (Dependency("a"),), "c": (Dependency("b"),)}


def test_empty_depends_on_makes_a_root_and_the_next_step_still_follows_it() -> None:
    loaded = load_definition(steps_def(step("a"), step("b", depends_on=[]), step("c")))
    assert deps(loaded) == {"a": (), "b": (), "c": (Dependency("b"),)}


def test_explicit_and_conditional_dependencies_keep_their_order() -> None:
    loaded = load_definition(
        steps_def(
            step("a"),
            step("b", depends_on=[]),
            step("c", depends_on=["b", {"step": "a", "condition": "output.ok"}, {"step": "x0"}]),
            step("x0", depends_on=[]),
        )
    )
    assert loaded.step("c").depends_on == (
        Dependency("b"),
        Dependency("a", "output.ok"),
        Dependency("x0"),
    )


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_blank_conditions_mean_no_condition(blank: str | None) -> None:
    loaded = load_definition(
        steps_def(
            step("a"), step("b", depends_on=[{"step": "a", "condition": blank}], condition=blank)
        )
    )
    assert loaded.step("b").depends_on == (Dependency("a"),)
    assert loaded.step("b").condition is None
    assert normalise_condition(blank) is None


def test_a_trigger_step_is_a_root_even_without_depends_on() -> None:
    loaded = load_definition(steps_def(step("a"), {"id": "t", "type": "trigger"}, step("b")))
    assert deps(loaded) == {"a": (), "t": (), "b": (Dependency("t"),)}
    assert loaded.step("t").kind == "trigger"
    assert loaded.step("t").action is None


def test_steps_are_in_topological_order_with_ties_by_definition_order() -> None:
    loaded = load_definition(
        steps_def(
            step("late", depends_on=["mid"]),
            step("mid", depends_on=["root2", "root1"]),
            step("root2", depends_on=[]),
            step("root1", depends_on=[]),
            step("free", depends_on=[]),
        )
    )
    assert loaded.step_ids == ("root2", "root1", "mid", "late", "free")


# --- graph format -------------------------------------------------------------------------


def graph(
    nodes: list[dict[str, Any]], connections: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    source: dict[str, Any] = {"id": "g", "nodes": nodes}
    if connections is not None:
        source["connections"] = connections
    return source


def test_nodes_become_steps_with_config_or_top_level_keys() -> None:
    loaded = load_definition(
        graph(
            [
                {"id": "t", "type": "trigger", "name": "Start"},
                {"id": "a", "config": {"action": "x", "parameters": {"p": 1}, "timeout": 5}},
                {"id": "b", "action": "y", "retry": {"max_attempts": 2}, "config": {"name": "B"}},
            ],
            [
                {"source": "t", "target": "a"},
                {"source": "a", "target": "b", "condition": "output.p"},
            ],
        )
    )
    a, b = loaded.step("a"), loaded.step("b")
    assert (a.action, dict(a.parameters), a.timeout) == ("x", {"p": 1}, 5.0)
    assert (b.action, b.retry, b.name) == ("y", RetryPolicy(max_attempts=2), "B")
    assert b.depends_on == (Dependency("a", "output.p"),)
    assert loaded.step("t").name == "Start"


def test_incoming_edges_follow_connection_order() -> None:
    loaded = load_definition(
        graph(
            [step("a"), step("b"), step("c"), step("join")],
            [
                {"source": "c", "target": "join"},
                {"source": "a", "target": "join"},
                {"source": "b", "target": "join", "condition": "status == 'COMPLETED'"},
            ],
        )
    )
    assert loaded.step("join").depends_on == (
        Dependency("c"),
        Dependency("a"),
        Dependency("b", "status == 'COMPLETED'"),
    )
    assert loaded.step_ids == ("a", "b", "c", "join")


def test_connections_are_optional_and_nodes_without_edges_are_roots() -> None:
    loaded = load_definition(graph([step("a"), step("b")]))
    assert deps(loaded) == {"a": (), "b": ()}


def test_a_key_given_at_node_level_and_in_config_is_a_problem() -> None:
    assert paths(graph([{"id": "a", "action": "x", "config": {"action": "y"}}])) == [
        "$.nodes[0].config.action"
    ]


def test_node_type_must_be_action_or_trigger() -> None:
    assert paths(graph([{"id": "a", "type": "webhook", "config": {"action": "x"}}])) == [
        "$.nodes[0].type"
    ]


def test_nodes_cannot_declare_depends_on() -> None:
    assert paths(graph([step("a"), step("b", depends_on=["a"])])) == ["$.nodes[1].depends_on"]


def test_one_format_only() -> None:
    assert paths({"id": "w", "steps": [step("a")], "nodes": [step("a")], "connections": []}) == [
        "$.nodes"
    ]
    assert paths({"id": "w", "steps": [step("a")], "connections": []}) == ["$.connections"]
    assert paths({"id": "w"}) == ["$"]
    assert paths({"id": "w", "connections": []}) == ["$"]


def test_equivalent_definitions_in_both_formats_have_the_same_hash() -> None:
    as_steps = steps_def(
        step("a", parameters={"n": 1}),
        step("b", depends_on=[{"step": "a", "condition": "output.n > 0"}]),
        step("c", depends_on=[]),
    )
    as_graph = {
        "id": "w",
        "nodes": [
            {"id": "a", "config": {"action": "noop", "parameters": {"n": 1}}},
            {"id": "b", "action": "noop"},
            {"id": "c", "config": {"action": "noop"}},
        ],
        "connections": [{"source": "a", "target": "b", "condition": "output.n > 0"}],
    }
    assert load_definition(as_steps) == load_definition(as_graph)


# --- normalisation ----------------------------------------------------------------------


def test_numbers_are_normalised() -> None:
    loaded = load_definition(
        steps_def(
            step(
                "a", timeout=5, retry={"max_attempts": 4.0, "initial_interval": 1, "jitter": True}
            ),
            version=7,
        )
    )
    a = loaded.step("a")
    assert isinstance(a.timeout, float) and a.timeout == 5.0
    assert a.retry == RetryPolicy(max_attempts=4, initial_interval=1.0, jitter=1.0)
    assert isinstance(a.retry.max_attempts, int)
    assert loaded.version == "7"


def test_retry_defaults_and_boolean_jitter() -> None:
    assert build_retry(None) is None
    assert build_retry({}) == RetryPolicy()
    assert build_retry({"jitter": False}) == RetryPolicy(jitter=0.0)
    assert build_retry({"non_retryable": ["ValueError"]}) == RetryPolicy(
        non_retryable=("ValueError",)
    )


def test_a_float_version_is_refused() -> None:
    assert paths(steps_def(step("a"), version=1.1)) == ["$.version"]


def test_every_model_field_is_filled() -> None:
    loaded = load_definition(
        steps_def(
            step(
                "a",
                name="A",
                parameters={"list": [1, {"x": None}]},
                condition="input.go",
                continue_on_error=True,
                input_schema={"type": "object"},
                output_schema={"type": "object"},
                compensate={"action": "undo", "parameters": {"id": "${a.output.id}"}},
            ),
            name="W",
            description="D",
            input_schema={"type": "object"},
        )
    )
    assert (loaded.name, loaded.description, dict(loaded.input_schema or {})) == (
        "W",
        "D",
        {"type": "object"},
    )
    a = loaded.step("a")
    assert a == StepDefinition(
        id="a",
        action="noop",
        parameters=a.parameters,
        condition="input.go",
        continue_on_error=True,
        input_schema=a.input_schema,
        output_schema=a.output_schema,
        compensate=Compensation("undo", a.compensate.parameters if a.compensate else {}),
        name="A",
    )
    assert a.to_dict()["parameters"] == {"list": [1, {"x": None}]}
    assert a.to_dict()["compensate"] == {"action": "undo", "parameters": {"id": "${a.output.id}"}}


def test_null_parameters_are_no_parameters() -> None:
    yaml_text = "id: w\nsteps:\n  - id: a\n    action: noop\n    parameters:\n"
    assert dict(load_definition(yaml_text).step("a").parameters) == {}


# --- immutability -----------------------------------------------------------------------


def test_definitions_are_immutable_all_the_way_down() -> None:
    source = steps_def(step("a", parameters={"items": [1, 2], "nested": {"k": "v"}}))
    loaded = load_definition(source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.id = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.steps[0].action = "other"  # type: ignore[misc]
    parameters = loaded.steps[0].parameters
    with pytest.raises(TypeError):
        parameters["items"] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        parameters["nested"]["k"] = "changed"
    assert isinstance(parameters["items"], tuple)
    source["steps"][0]["parameters"]["nested"]["k"] = "changed after loading"
    assert loaded.steps[0].parameters["nested"]["k"] == "v"


# --- canonical form and hash ------------------------------------------------------------


def test_hash_is_the_sha256_of_the_canonical_form() -> None:
    loaded = load_definition(steps_def(step("a")))
    assert loaded.hash == sha256_hex(canonical_json(loaded.to_dict()))
    assert len(loaded.hash) == 64


@pytest.mark.parametrize(
    "source",
    [
        steps_def(step("a", parameters={"x": [1, 2.5, None, True]}), step("b")),
        {
            "id": "g",
            "nodes": [{"id": "t", "type": "trigger"}, {"id": "a", "config": {"action": "x"}}],
            "connections": [{"source": "t", "target": "a", "condition": "input.ok"}],
        },
    ],
    ids=["steps", "graph"],
)
def test_to_dict_round_trips_exactly(source: dict[str, Any]) -> None:
    loaded = load_definition(source)
    again = load_definition(loaded.to_dict())
    assert again == loaded
    assert again.hash == loaded.hash
    via_json = load_definition(json.dumps(loaded.to_dict()))
    assert via_json.hash == loaded.hash


def test_key_order_does_not_change_the_hash() -> None:
    forward = steps_def(step("a", parameters={"x": 1, "y": {"p": 1, "q": 2}}, timeout=3))
    backward = {
        "steps": [
            {
                "timeout": 3,
                "parameters": {"y": {"q": 2, "p": 1}, "x": 1},
                "action": "noop",
                "id": "a",
            }
        ],
        "id": "w",
    }
    assert load_definition(forward).hash == load_definition(backward).hash


def test_explicit_defaults_equal_omitted_ones() -> None:
    omitted = load_definition(steps_def(step("a"), step("b", retry={})))
    explicit = load_definition(
        steps_def(
            step(
                "a",
                type="action",
                parameters={},
                condition=None,
                continue_on_error=False,
                timeout=None,
            ),
            step("b", depends_on=["a"], retry={"max_attempts": 3, "backoff": 2, "jitter": 0}),
            name=None,
            description=None,
            version=None,
            input_schema=None,
        )
    )
    assert explicit == omitted
    assert explicit.hash == omitted.hash


def test_a_different_value_gives_a_different_hash() -> None:
    base = load_definition(steps_def(step("a", parameters={"x": 1})))
    assert load_definition(steps_def(step("a", parameters={"x": 2}))).hash != base.hash
    assert load_definition(steps_def(step("a", parameters={"x": 1.0}))).hash != base.hash


def test_step_lookup_and_downstream() -> None:
    loaded = load_definition(steps_def(step("a"), step("b"), step("c", depends_on=["a"])))
    assert loaded.step("b").id == "b"
    assert [each.id for each in loaded.downstream("a")] == ["b", "c"]
    with pytest.raises(KeyError):
        loaded.step("missing")


def test_retry_intervals_grow_up_to_the_cap() -> None:
    policy = (
        load_definition(
            steps_def(step("a", retry={"initial_interval": 1, "backoff": 3, "max_interval": 20}))
        )
        .step("a")
        .retry
    )
    assert policy is not None
    assert [policy.interval_before(attempt) for attempt in (2, 3, 4, 5)] == [1.0, 3.0, 9.0, 20.0]
