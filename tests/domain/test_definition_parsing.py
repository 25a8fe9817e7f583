"""Reading definition sources: mappings, JSON/YAML text, paths, and the structural check."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from flowledger.domain.definition import WorkflowDefinition, load_definition
from flowledger.domain.definition.parsing import DEFINITION_SCHEMA, MAX_DEPTH
from flowledger.errors import DefinitionError, DefinitionProblem

DEFINITIONS = Path(__file__).parent / "definitions"
MINIMAL = {"id": "w", "steps": [{"id": "a", "action": "noop"}]}
MINIMAL_JSON = json.dumps(MINIMAL)
MINIMAL_YAML = "id: w\nsteps:\n  - id: a\n    action: noop\n"


def problems(source: Any) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source)
    errors = caught.value.errors
    assert errors, "a DefinitionError must list at least one problem"
    assert all(isinstance(problem, DefinitionProblem) for problem in errors)
    return [(problem.path, problem.message) for problem in errors]


def only_problem(source: Any) -> tuple[str, str]:
    found = problems(source)
    assert len(found) == 1, found
    return found[0]


# --- accepted sources -------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        MINIMAL,
        OrderedDict(MINIMAL),
        MappingProxyType({"id": "w", "steps": (MappingProxyType({"id": "a", "action": "noop"}),)}),
        MINIMAL_JSON,
        "  \n" + MINIMAL_JSON,
        MINIMAL_YAML,
        "{id: w, steps: [{id: a, action: noop}]}",
    ],
    ids=["dict", "ordered", "frozen", "json", "json-leading-space", "yaml", "yaml-flow"],
)
def test_every_accepted_source_loads_the_same_definition(source: Any) -> None:
    assert load_definition(source) == load_definition(MINIMAL)


def test_json_file_by_str_and_by_path(tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(MINIMAL_JSON, encoding="utf-8")
    assert load_definition(str(path)) == load_definition(path) == load_definition(MINIMAL)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_yaml_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"flow{suffix}"
    path.write_text(MINIMAL_YAML, encoding="utf-8")
    assert load_definition(path).hash == load_definition(MINIMAL).hash


def test_fixture_files_load() -> None:
    order = load_definition(DEFINITIONS / "order.yaml")
    assert isinstance(order, WorkflowDefinition)
    assert order.version == "3"
    assert order.step_ids == ("fetch", "charge", "ship", "notify")
    branching = load_definition(str(DEFINITIONS / "branching.json"))
    assert branching.step_ids == ("start", "check", "approve", "review", "done")


def test_existing_file_without_a_known_suffix_is_a_path_but_refused(tmp_path: Path) -> None:
    path = tmp_path / "flow.txt"
    path.write_text(MINIMAL_YAML, encoding="utf-8")
    path_, message = only_problem(str(path))
    assert path_ == "$"
    assert "unsupported file extension" in message


# --- refused sources --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, "not None"),
        (42, "not int"),
        (4.2, "not float"),
        ([], "not list"),
        ([MINIMAL], "not list"),
        (b"", "bytes"),
        (MINIMAL_JSON.encode(), "bytes"),
        (bytearray(b"{}"), "bytes"),
        ("", "empty"),
        ("   \n  ", "empty"),
        ("{", "not valid JSON"),
        ('{"id": ', "not valid JSON"),
        ('{"id": "w", "steps": [', "not valid JSON"),
        ("[1, 2", "not valid JSON"),
        ("- a\n- b", "got array"),
        ("[1, 2]", "got array"),
        (": :", "not valid YAML"),
        ("id: [\n", "not valid YAML"),
        ("just words", "neither a definition nor the path of an existing file"),
        ("# only a comment\n", "got empty"),
        ("42\n", "got integer"),
        ("'a string'\n", "got string"),
        ("missing.yaml", "file not found"),
        ("missing.json", "file not found"),
        ("some/dir/missing.yml", "file not found"),
    ],
)
def test_unreadable_sources_raise_definition_error(source: Any, expected: str) -> None:
    path, message = only_problem(source)
    assert path == "$"
    assert expected in message


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    for source in (tmp_path, str(tmp_path)):
        _, message = only_problem(source)
        assert "is a directory" in message


def test_missing_path_object(tmp_path: Path) -> None:
    _, message = only_problem(tmp_path / "nope.json")
    assert "file not found" in message


def test_empty_and_undecodable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("  \n", encoding="utf-8")
    assert "the file is empty" in only_problem(empty)[1]
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"id": "caf\xe9"}')
    assert "cannot be read" in only_problem(latin)[1]


def test_broken_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "w", ', encoding="utf-8")
    message = only_problem(broken)[1]
    assert message.startswith(f"{broken}: not valid JSON")
    yaml_in_json = tmp_path / "flow.json"
    yaml_in_json.write_text(MINIMAL_YAML, encoding="utf-8")
    assert "not valid JSON" in only_problem(yaml_in_json)[1]


def test_the_original_parse_error_is_chained() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition('{"id": ')
    assert isinstance(caught.value.__cause__, ValueError)


def test_deeply_nested_text_is_refused_not_a_crash() -> None:
    for text in ("[" * 100_000, "{" + '"a":[' * 100_000):
        assert "not valid JSON" in only_problem(text)[1]
    assert "not valid YAML" in only_problem("a: " + "[" * 50_000 + "\n")[1]


def test_integers_past_pythons_digit_limit_are_refused() -> None:
    assert "not valid JSON" in only_problem('{"id": ' + "9" * 5000 + "}")[1]


# --- JSON data ---------------------------------------------------------------------------


def test_values_json_cannot_hold_are_reported_where_they_are() -> None:
    found = problems(
        {
            "id": "w",
            "steps": [
                {
                    "id": "a",
                    "action": "noop",
                    "parameters": {"when": {1, 2}, "ratio": float("nan"), 3: "x"},
                    "continue_on_error": object(),
                }
            ],
        }
    )
    paths = dict(found)
    assert "a set is not a JSON value" in paths["$.steps[0].parameters.when"]
    assert paths["$.steps[0].parameters.ratio"] == "not a finite number"
    assert paths["$.steps[0].parameters"] == "key 3 is not a string"
    assert "is not a JSON value" in paths["$.steps[0].continue_on_error"]
    # The refused value is not also reported as the wrong type at the same place.
    assert len(found) == 4


def test_yaml_dates_must_be_quoted() -> None:
    path, message = only_problem("id: w\nversion: 2024-01-31\nsteps: [{id: a, action: noop}]\n")
    assert path == "$.version"
    assert "a date is not a JSON value (quote it" in message


def test_json_infinity_is_refused() -> None:
    text = '{"id": "w", "steps": [{"id": "a", "action": "noop", "timeout": Infinity}]}'
    assert only_problem(text) == ("$.steps[0].timeout", "not a finite number")


def test_nesting_deeper_than_the_limit_is_refused_at_its_path() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 5):
        deep = {"x": deep}
    path, message = only_problem(
        {"id": "w", "steps": [{"id": "a", "action": "n", "parameters": deep}]}
    )
    assert path.startswith("$.steps[0].parameters.x.x")
    assert message == f"nested deeper than {MAX_DEPTH} levels"


def test_self_referencing_yaml_anchor_is_refused() -> None:
    text = "id: w\nsteps:\n  - id: a\n    action: n\n    parameters: &loop\n      self: *loop\n"
    _, message = only_problem(text)
    assert "nested deeper than" in message


def test_yaml_alias_bomb_is_refused() -> None:
    lines = ["id: w", "steps:", "  - id: a", "    action: n", "    parameters:"]
    lines.append('      a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]')
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"      a{level}: &a{level} [{refs}]")
    path, message = only_problem("\n".join(lines) + "\n")
    assert path == "$"
    assert message == "the definition holds more than 1000000 values"


# --- structure (JSON Schema) ------------------------------------------------------------


def test_the_shipped_schema_is_draft_2020_12() -> None:
    assert DEFINITION_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert DEFINITION_SCHEMA["additionalProperties"] is False


def test_unknown_keys_are_problems_with_a_suggestion() -> None:
    found = problems(
        {"id": "w", "stepz": [], "steps": [{"id": "a", "action": "n", "dependson": []}]}
    )
    assert found == [
        ("$.stepz", "unknown key 'stepz'; did you mean 'steps'?"),
        ("$.steps[0].dependson", "unknown key 'dependson'; did you mean 'depends_on'?"),
    ]


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    path, message = only_problem(
        {"id": "w", "steps": [{"id": "a", "action": "n", "retry": {"zzz": 1}}]}
    )
    assert path == "$.steps[0].retry.zzz"
    assert "known keys: max_attempts, initial_interval" in message


def test_required_keys_and_types() -> None:
    found = problems({"steps": [{"action": "n"}, {"id": 5, "action": ["x"]}]})
    assert found == [
        ("$.id", "required key is missing"),
        ("$.steps[0].id", "required key is missing"),
        ("$.steps[1].action", "expected string or null, got array"),
        ("$.steps[1].id", "expected string, got integer"),
    ]


def test_invalid_step_id_pattern_and_length() -> None:
    found = dict(
        problems(
            {"id": "w", "steps": [{"id": "1st", "action": "n"}, {"id": "a" * 129, "action": "n"}]}
        )
    )
    assert "'1st' is not a valid id" in found["$.steps[0].id"]
    assert "is too long" in found["$.steps[1].id"]


def test_problems_are_in_document_order() -> None:
    steps: list[dict[str, Any]] = [{"id": f"s{i}", "action": "n"} for i in range(12)]
    steps[2]["timeout"] = 0
    steps[10]["timeout"] = 0
    paths = [path for path, _ in problems({"id": "w", "steps": steps})]
    assert paths == ["$.steps[2].timeout", "$.steps[10].timeout"]


def test_odd_keys_are_quoted_in_paths() -> None:
    path, _ = only_problem({"id": "w", "steps": [{"id": "a", "action": "n"}], "my key": 1})
    assert path == "$['my key']"


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition({"id": "", "steps": []})
    text = str(caught.value)
    assert "(2 problems)" in text
    assert "$.id:" in text and "$.steps:" in text


def test_one_line_yaml_mapping_is_content() -> None:
    assert only_problem("id: w") == ("$", "no steps: give 'steps', or 'nodes' and 'connections'")


def test_each_missing_required_key_is_named() -> None:
    source = {"id": "g", "nodes": [{"id": "a", "action": "n"}], "connections": [{"source": "a"}]}
    assert only_problem(source) == ("$.connections[0].target", "required key is missing")


def test_each_missing_required_key_is_reported_once() -> None:
    graph = {
        "id": "g",
        "nodes": [{"id": "t", "type": "trigger"}, {"id": "a", "config": {"action": "noop"}}],
        "connections": [{"from": "t", "to": "a"}],
    }
    with pytest.raises(DefinitionError) as found:
        load_definition(graph)

    paths = [problem.path for problem in found.value.errors]
    assert paths.count("$.connections[0].source") == 1
    assert paths.count("$.connections[0].target") == 1
