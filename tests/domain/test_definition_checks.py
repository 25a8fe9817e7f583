"""Semantic checks: every problem, at its exact path, all reported together."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.domain.definition import load_definition
from flowledger.errors import DefinitionError


def step(step_id: str, **keys: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "noop", **keys}


def found(*steps: dict[str, Any], **top: Any) -> list[tuple[str, str]]:
    return problems_of({"id": "w", **top, "steps": list(steps)})


def problems_of(source: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source)
    return [(problem.path, problem.message) for problem in caught.value.errors]


def ok(*steps: dict[str, Any]) -> None:
    load_definition({"id": "w", "steps": list(steps)})


def one(*steps: dict[str, Any], **top: Any) -> tuple[str, str]:
    problems = found(*steps, **top)
    assert len(problems) == 1, problems
    return problems[0]


# --- ids and edges ----------------------------------------------------------------------


def test_duplicate_ids_are_reported_at_the_second() -> None:
    assert one(step("a"), step("b"), step("a", depends_on=[])) == (
        "$.steps[2].id",
        "duplicate step id 'a' (first used at $.steps[0])",
    )


def test_duplicate_node_ids() -> None:
    source = {"id": "g", "nodes": [step("a"), step("a")], "connections": []}
    assert problems_of(source) == [
        ("$.nodes[1].id", "duplicate step id 'a' (first used at $.nodes[0])")
    ]


def test_input_is_a_reserved_id() -> None:
    path, message = one(step("input"))
    assert path == "$.steps[0].id"
    assert "'input' is reserved" in message


def test_unknown_dependency_with_a_suggestion() -> None:
    assert one(step("fetch"), step("b", depends_on=["fetc"])) == (
        "$.steps[1].depends_on[0]",
        "unknown step 'fetc'; did you mean 'fetch'?",
    )
    assert one(step("a"), step("b", depends_on=[{"step": "zzz"}])) == (
        "$.steps[1].depends_on[0].step",
        "unknown step 'zzz'",
    )


def test_unknown_connection_endpoints() -> None:
    source = {
        "id": "g",
        "nodes": [step("a"), step("b")],
        "connections": [{"source": "a", "target": "nowhere"}, {"source": "ghost", "target": "b"}],
    }
    assert [path for path, _ in problems_of(source)] == [
        "$.connections[0].target",
        "$.connections[1].source",
    ]


def test_self_dependency() -> None:
    assert one(step("a", depends_on=["a"])) == (
        "$.steps[0].depends_on[0]",
        "step 'a' depends on itself",
    )
    source = {"id": "g", "nodes": [step("a")], "connections": [{"source": "a", "target": "a"}]}
    assert problems_of(source) == [("$.connections[0]", "step 'a' depends on itself")]


def test_duplicate_edges() -> None:
    assert one(step("a"), step("b", depends_on=["a", {"step": "a", "condition": "output"}])) == (
        "$.steps[1].depends_on[1]",
        "duplicate edge a -> b (first at $.steps[1].depends_on[0])",
    )


# --- cycles -----------------------------------------------------------------------------


def test_a_cycle_names_its_nodes_in_order_at_the_closing_edge() -> None:
    assert one(step("a", depends_on=["c"]), step("b"), step("c")) == (
        "$.steps[0].depends_on[0]",
        "cycle: a -> b -> c -> a",
    )


def test_every_cycle_of_a_graph_is_reported() -> None:
    source = {
        "id": "g",
        "nodes": [step(name) for name in "abcde"],
        "connections": [
            {"source": "a", "target": "b"},
            {"source": "b", "target": "a"},
            {"source": "c", "target": "d"},
            {"source": "d", "target": "e"},
            {"source": "e", "target": "c"},
        ],
    }
    assert problems_of(source) == [
        ("$.connections[1]", "cycle: a -> b -> a"),
        ("$.connections[4]", "cycle: c -> d -> e -> c"),
    ]


# --- actions and triggers ---------------------------------------------------------------


def test_an_action_step_needs_an_action() -> None:
    assert one({"id": "a"}) == (
        "$.steps[0].action",
        "an action step needs an 'action' (or type 'trigger')",
    )
    assert one({"id": "a", "action": None})[0] == "$.steps[0].action"
    graph = {"id": "g", "nodes": [{"id": "a"}], "connections": []}
    assert [path for path, _ in problems_of(graph)] == ["$.nodes[0].config.action"]


def test_a_trigger_runs_no_action() -> None:
    source = {
        "id": "g",
        "nodes": [
            {
                "id": "t",
                "type": "trigger",
                "action": "x",
                "config": {"parameters": {"a": 1}, "retry": {}, "timeout": 1},
                "compensate": {"action": "undo"},
            }
        ],
    }
    assert [path for path, _ in problems_of(source)] == [
        "$.nodes[0].action",
        "$.nodes[0].config.parameters",
        "$.nodes[0].config.retry",
        "$.nodes[0].config.timeout",
        "$.nodes[0].compensate",
    ]


def test_a_trigger_has_no_incoming_edges() -> None:
    source = {
        "id": "g",
        "nodes": [step("a"), {"id": "t", "type": "trigger"}],
        "connections": [{"source": "a", "target": "t"}],
    }
    assert problems_of(source) == [("$.connections[0]", "trigger 't' cannot wait for other steps")]
    assert one(step("a"), {"id": "t", "type": "trigger", "depends_on": ["a"]}) == (
        "$.steps[1].depends_on[0]",
        "trigger 't' cannot wait for other steps",
    )


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "path"),
    [
        ({"timeout": 0}, "$.steps[0].timeout"),
        ({"timeout": -5}, "$.steps[0].timeout"),
        ({"timeout": 31_536_001}, "$.steps[0].timeout"),
        ({"timeout": "10s"}, "$.steps[0].timeout"),
        ({"timeout": True}, "$.steps[0].timeout"),
        ({"retry": {"max_attempts": 0}}, "$.steps[0].retry.max_attempts"),
        ({"retry": {"max_attempts": 1001}}, "$.steps[0].retry.max_attempts"),
        ({"retry": {"max_attempts": 2.5}}, "$.steps[0].retry.max_attempts"),
        ({"retry": {"initial_interval": -1}}, "$.steps[0].retry.initial_interval"),
        ({"retry": {"backoff": 0.5}}, "$.steps[0].retry.backoff"),
        ({"retry": {"jitter": 1.5}}, "$.steps[0].retry.jitter"),
        ({"retry": {"jitter": "full"}}, "$.steps[0].retry.jitter"),
        ({"retry": {"non_retryable": "ValueError"}}, "$.steps[0].retry.non_retryable"),
        ({"retry": {"non_retryable": ["A", "A"]}}, "$.steps[0].retry.non_retryable"),
        ({"retry": 3}, "$.steps[0].retry"),
        ({"compensate": {"parameters": {}}}, "$.steps[0].compensate.action"),
        ({"compensate": "undo"}, "$.steps[0].compensate"),
        ({"continue_on_error": "yes"}, "$.steps[0].continue_on_error"),
        ({"parameters": [1, 2]}, "$.steps[0].parameters"),
        ({"type": "webhook"}, "$.steps[0].type"),
        ({"depends_on": "a"}, "$.steps[0].depends_on"),
        ({"depends_on": [7]}, "$.steps[0].depends_on[0]"),
    ],
)
def test_out_of_range_and_wrong_type_values(keys: dict[str, Any], path: str) -> None:
    assert one(step("s", **keys))[0] == path


def test_max_interval_below_initial_interval() -> None:
    assert one(step("a", retry={"initial_interval": 10, "max_interval": 5})) == (
        "$.steps[0].retry.max_interval",
        "max_interval 5 is below initial_interval 10",
    )
    assert one(step("a", retry={"initial_interval": 100}))[1] == (
        "max_interval 60.0 (the default) is below initial_interval 100"
    )


def test_invalid_json_schemas_are_reported_inside_the_schema() -> None:
    problems = found(
        step(
            "a",
            input_schema={"type": "objekt"},
            output_schema={"properties": {"n": {"minimum": "zero"}}},
        ),
        input_schema={"required": "name"},
    )
    paths = [path for path, _ in problems]
    assert paths == [
        "$.steps[0].input_schema.type",
        "$.steps[0].output_schema.properties.n.minimum",
        "$.input_schema.required",
    ]
    assert all(message.startswith("not a valid JSON Schema: ") for _, message in problems)


def test_schemas_are_checked_against_their_declared_draft() -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "exclusiveMinimum": 3}
    assert one(step("a", output_schema=draft4))[0] == "$.steps[0].output_schema.exclusiveMinimum"
    assert one(step("a", output_schema={"$schema": 4}))[0] == "$.steps[0].output_schema['$schema']"


# --- references -------------------------------------------------------------------------


def test_references_to_upstream_steps_and_input_are_fine() -> None:
    deep = ["${a.output.items[0].name} and ${b.status}"]
    ok(step("a", parameters={"x": "${input.x}"}), step("b"), step("c", parameters={"deep": deep}))


def test_reference_to_an_unknown_root() -> None:
    assert one(step("fetch"), step("b", parameters={"u": {"v": ["${fetc.output}"]}})) == (
        "$.steps[1].parameters.u.v[0]",
        "${fetc.output}: unknown root 'fetc', neither 'input' nor a step id; did you mean 'fetch'?",
    )


def test_reference_to_a_step_that_is_not_upstream() -> None:
    path, message = one(step("a", parameters={"x": "${b.output}"}), step("b"))
    assert path == "$.steps[0].parameters.x"
    assert "step 'b' is not upstream of step 'a'" in message
    # Parallel branches are not upstream of each other either.
    path, _ = one(
        step("a"),
        step("b", depends_on=["a"]),
        step("c", depends_on=["a"], parameters={"x": "${b.output}"}),
    )
    assert path == "$.steps[2].parameters.x"


def test_a_step_cannot_reference_itself_but_its_compensation_can() -> None:
    assert one(step("a", parameters={"x": "${a.output}"})) == (
        "$.steps[0].parameters.x",
        "${a.output}: step 'a' cannot reference its own result",
    )
    ok(step("a", compensate={"action": "undo", "parameters": {"id": "${a.output.id}"}}))


def test_compensation_references_are_checked_too() -> None:
    compensate = {"action": "undo", "parameters": {"x": "${b.output}"}}
    assert one(step("a", compensate=compensate), step("b"))[0] == (
        "$.steps[0].compensate.parameters.x"
    )


def test_malformed_references() -> None:
    path, message = one(step("a", parameters={"x": "${input.}"}))
    assert path == "$.steps[0].parameters.x"
    assert message.startswith("malformed reference '${input.}'")
    assert one(step("a"), step("b", parameters={"x": "${a}"}))[0] == "$.steps[1].parameters.x"


# --- conditions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    ["output.ok and", "foo > 1", "__import__('os')", "[x for x in input]", "${input.}"],
)
def test_bad_conditions_are_reported_at_the_condition(condition: str) -> None:
    assert one(step("a", condition=condition))[0] == "$.steps[0].condition"
    assert one(step("a"), step("b", depends_on=[{"step": "a", "condition": condition}]))[0] == (
        "$.steps[1].depends_on[0].condition"
    )


def test_connection_conditions_are_checked() -> None:
    source = {
        "id": "g",
        "nodes": [step("a"), step("b")],
        "connections": [{"source": "a", "target": "b", "condition": "output.ok ==="}],
    }
    assert [path for path, _ in problems_of(source)] == ["$.connections[0].condition"]


def test_condition_references_follow_the_upstream_rule() -> None:
    assert (
        one(step("a", condition="${b.output.ok}", depends_on=[]), step("b"))[0]
        == "$.steps[0].condition"
    )
    ok(step("a"), step("b", condition="${a.output.ok}"))


def test_edge_conditions_may_read_only_the_source_and_its_upstream() -> None:
    allowed = {"step": "b", "condition": "${a.output.n} > ${b.output.n}"}
    ok(step("a"), step("b"), step("c", depends_on=[allowed]))
    sibling = {"step": "b", "condition": "${x.output.n} > 1"}
    path, message = one(
        step("x", depends_on=[]), step("b", depends_on=[]), step("c", depends_on=["x", sibling])
    )
    assert path == "$.steps[2].depends_on[1].condition"
    assert "not upstream of the edge b -> c" in message


@pytest.mark.parametrize("name", ["output", "result", "status", "error"])
def test_source_names_in_a_guard_need_exactly_one_dependency(name: str) -> None:
    ok(step("a"), step("b", condition=f"{name} != 1"))
    for dependencies in ([], ["a", "b"]):
        path, message = one(
            step("a"),
            step("b", depends_on=[]),
            step("c", depends_on=dependencies, condition=f"{name} != 1"),
        )
        assert path == "$.steps[2].condition"
        assert f"{len(dependencies)} dependencies" in message
        assert "${<step>.output...}" in message and "steps.<step id>" in message


def test_source_names_on_edges_mean_the_source() -> None:
    edge = {"step": "a", "condition": "status == 'COMPLETED' and not error"}
    ok(step("a"), step("b", depends_on=[]), step("c", depends_on=[edge, "b"]))


def test_steps_reads_in_a_guard_may_name_any_ancestor() -> None:
    both = "steps.a.status == 'COMPLETED' and steps['b'].output.ok"
    ok(step("a"), step("b"), step("c", condition=both))
    ok(step("charge-card"), step("c", condition="steps['charge-card'].status == 'FAILED'"))


def test_steps_read_of_an_unknown_step() -> None:
    assert one(step("fetch"), step("b", condition="steps.fetc.output.ok")) == (
        "$.steps[1].condition",
        "steps.fetc: unknown step 'fetc'; did you mean 'fetch'?",
    )
    edge = {"step": "a", "condition": "steps['charge-card'].status == 'x' or steps['if']"}
    assert found(step("a"), step("b", depends_on=[edge])) == [
        ("$.steps[1].depends_on[0].condition", "steps['charge-card']: unknown step 'charge-card'"),
        ("$.steps[1].depends_on[0].condition", "steps['if']: unknown step 'if'"),
    ]
    source = {
        "id": "g",
        "nodes": [step("a"), step("b")],
        "connections": [{"source": "a", "target": "b", "condition": "steps.input.output"}],
    }
    assert problems_of(source) == [
        ("$.connections[0].condition", "steps.input: unknown step 'input'")
    ]


def test_steps_read_in_a_guard_of_a_step_that_is_not_upstream() -> None:
    assert one(step("a", condition="steps.b.output.ok", depends_on=[]), step("b")) == (
        "$.steps[0].condition",
        "steps.b: step 'b' is not upstream of step 'a'; it may not have run yet"
        " (add it to depends_on)",
    )
    assert one(step("a", condition="steps['a'].status == 'COMPLETED'")) == (
        "$.steps[0].condition",
        "steps.a: step 'a' cannot reference its own result",
    )


def test_steps_reads_on_an_edge_are_the_source_and_its_upstream_only() -> None:
    allowed = {"step": "b", "condition": "steps.a.output.n > steps['b'].output.n"}
    ok(step("a"), step("b"), step("c", depends_on=[allowed]))
    sibling = {"step": "b", "condition": "steps.x.output.n > 1 and steps.c.status"}
    assert found(
        step("x", depends_on=[]), step("b", depends_on=[]), step("c", depends_on=["x", sibling])
    ) == [
        (
            "$.steps[2].depends_on[1].condition",
            "steps.c: step 'c' is not upstream of the edge b -> c; it may not have run yet"
            " (add it to depends_on)",
        ),
        (
            "$.steps[2].depends_on[1].condition",
            "steps.x: step 'x' is not upstream of the edge b -> c; it may not have run yet"
            " (add it to depends_on)",
        ),
    ]


def test_steps_reads_are_reported_after_the_references_of_the_same_condition() -> None:
    condition = "${later.output} and steps.later.status and steps.zz"
    assert found(step("a", condition=condition, depends_on=[]), step("later")) == [
        (
            "$.steps[0].condition",
            "${later.output}: step 'later' is not upstream of step 'a'; it may not have run yet"
            " (add it to depends_on)",
        ),
        (
            "$.steps[0].condition",
            "steps.later: step 'later' is not upstream of step 'a'; it may not have run yet"
            " (add it to depends_on)",
        ),
        ("$.steps[0].condition", "steps.zz: unknown step 'zz'"),
    ]


def test_a_dynamic_steps_index_is_reported_at_the_condition() -> None:
    assert one(step("a"), step("b", condition="steps[input.k].status")) == (
        "$.steps[1].condition",
        "steps must be indexed by a literal step id, as in steps.fetch or steps['fetch']",
    )


# --- many problems at once --------------------------------------------------------------


def test_every_problem_is_reported_together() -> None:
    problems = found(
        step("a", timeout=0, parameters={"x": "${nope.output}"}),
        step("a", retry={"max_attempts": 0}),
        step("c", depends_on=["ghost", "c"], condition="bad name"),
        {"id": "d", "action": 7, "foo": 1},
    )
    assert [path for path, _ in problems] == [
        "$.steps[0].timeout",
        "$.steps[1].retry.max_attempts",
        "$.steps[3].foo",
        "$.steps[3].action",
        "$.steps[1].id",
        "$.steps[2].depends_on[0]",
        "$.steps[2].depends_on[1]",
        "$.steps[0].parameters.x",
        "$.steps[2].condition",
    ]


def test_semantic_checks_still_run_when_the_structure_is_broken() -> None:
    problems = found(
        "not a step",
        {"id": 5},
        step("a", timeout="soon", retry="often", parameters={"x": "${ghost.output}"}),
        step("b", depends_on=["missing", 3, {"step": 4}, {"step": "a", "condition": 5}]),
        {"id": "c", "depends_on": "a", "action": "x"},
    )
    paths = [path for path, _ in problems]
    assert "$.steps[2].parameters.x" in paths  # semantic, on a well-formed part
    assert "$.steps[3].depends_on[0]" in paths  # unknown step
    assert "$.steps[2].timeout" in paths and "$.steps[0]" in paths


def test_wrong_top_level_types_are_reported_without_crashing() -> None:
    problems = problems_of(
        {"id": 3, "name": [], "version": True, "steps": {"a": 1}, "input_schema": "s"}
    )
    paths = [path for path, _ in problems]
    assert paths == ["$.id", "$.input_schema", "$.name", "$.steps", "$.version"]
