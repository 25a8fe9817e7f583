"""Cached JSON Schema validators and the checks of step inputs and outputs."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.domain.canonical import freeze
from flowledger.engine import schemas
from flowledger.engine.schemas import check, schema_errors, validator
from flowledger.errors import DefinitionError, SchemaValidationError

ORDER = {
    "type": "object",
    "required": ["customer", "items"],
    "properties": {
        "customer": {"type": "string", "format": "email"},
        "placed_at": {"type": "string", "format": "date-time"},
        "receipt": {"type": "string", "format": "uri"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "price"],
                "properties": {"sku": {"type": "string"}, "price": {"type": "number"}},
            },
        },
    },
}

VALID = {
    "customer": "ada@example.com",
    "placed_at": "2025-01-01T12:00:00Z",
    "receipt": "https://example.com/r/1",
    "items": [{"sku": "A", "price": 3.5}],
}


def test_a_valid_value_passes() -> None:
    check(ORDER, VALID, schema_type="input", step_id="order")

    assert schema_errors(ORDER, VALID) == []


def test_every_error_is_listed_with_its_path_in_path_order() -> None:
    items: list[dict[str, Any]] = [{"sku": "A", "price": "3"}, {"price": 1}]
    items += [{"sku": "X", "price": 1}] * 8
    items.append({"sku": "Z", "price": None})  # index 10: after [2], not after [1]
    value = {"customer": 7, "items": items}

    with pytest.raises(SchemaValidationError) as caught:
        check(ORDER, value, schema_type="output", step_id="order")

    error = caught.value
    assert error.schema_type == "output"
    assert error.step_id == "order"
    assert [e["path"] for e in error.errors] == [
        "$.customer",
        "$.items[0].price",
        "$.items[1]",
        "$.items[10].price",
    ]
    assert error.errors[2]["message"] == "'sku' is a required property"
    assert "7 is not of type 'string'" in error.errors[0]["message"]
    assert "$.items[0].price: '3' is not of type 'number'" in str(error)


def test_errors_are_ordered_by_path_not_by_schema_keyword() -> None:
    # "properties" is checked before "required", yet "$" sorts before "$.customer".
    errors = schema_errors(ORDER, {"customer": 7})

    assert [e["path"] for e in errors] == ["$", "$.customer"]
    assert errors[0]["message"] == "'items' is a required property"


def test_missing_required_members_are_reported_at_the_object() -> None:
    errors = schema_errors(ORDER, {})

    assert errors == [
        {"path": "$", "message": "'customer' is a required property"},
        {"path": "$", "message": "'items' is a required property"},
    ]


def test_paths_of_awkward_member_names_are_quoted() -> None:
    schema = {"type": "object", "properties": {"unit price": {"type": "number"}}}

    assert schema_errors(schema, {"unit price": "x"})[0]["path"] == "$['unit price']"


@pytest.mark.parametrize(
    ("member", "bad"),
    [
        ("placed_at", "yesterday"),
        ("placed_at", "2025-13-01T12:00:00Z"),
        ("customer", "not an address"),
        ("receipt", "no scheme here"),
    ],
)
def test_formats_are_checked(member: str, bad: str) -> None:
    errors = schema_errors(ORDER, {**VALID, member: bad})

    assert len(errors) == 1
    assert errors[0]["path"] == f"$.{member}"
    assert "is not a" in errors[0]["message"]


@pytest.mark.parametrize(
    ("value", "expected_type"),
    [(None, "object"), ([], "object"), ("text", "object"), (3, "object")],
)
def test_values_of_the_wrong_type(value: Any, expected_type: str) -> None:
    errors = schema_errors(ORDER, value)

    assert errors == [{"path": "$", "message": f"{value!r} is not of type '{expected_type}'"}]


def test_a_boolean_is_not_a_number() -> None:
    assert schema_errors({"type": "number"}, True) == [
        {"path": "$", "message": "True is not of type 'number'"}
    ]


def test_frozen_values_count_as_objects_and_arrays() -> None:
    check(ORDER, freeze(VALID), schema_type="input")

    with pytest.raises(SchemaValidationError, match=r"\$\.items\[0\]\.price"):
        check(ORDER, freeze({**VALID, "items": [{"sku": "A", "price": "x"}]}), schema_type="input")


def test_equal_schemas_share_one_validator() -> None:
    reordered = dict(reversed(list(ORDER.items())))

    first = validator(ORDER)

    assert validator(freeze(ORDER)) is first
    assert validator(reordered) is first
    assert validator({"type": "string"}) is not first


def test_the_schema_is_checked_once_per_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    schemas._validator.cache_clear()
    built = schemas._validator.cache_info().misses

    for _ in range(5):
        check({"type": "integer", "minimum": 3}, 4, schema_type="input")

    assert schemas._validator.cache_info().misses == built + 1


def test_the_draft_named_by_the_schema_is_used() -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "integer"}

    assert type(validator(draft7)).__name__ == "Draft7Validator"
    assert type(validator({"type": "integer"})).__name__ == "Draft202012Validator"


def test_an_invalid_schema_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError) as caught:
        validator({"type": "object", "properties": {"a": {"type": "nonsense"}}})

    (problem,) = caught.value.errors
    assert problem.path == "$.properties.a.type"
    assert problem.message.startswith("invalid JSON Schema")


def test_very_many_errors_are_capped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "MAX_ERRORS", 3)

    errors = schema_errors({"type": "array", "items": {"type": "string"}}, list(range(10)))

    assert [e["path"] for e in errors] == ["$[0]", "$[1]", "$"]
    assert errors[-1]["message"] == "... and 8 more"


def test_long_messages_are_cut() -> None:
    errors = schema_errors({"type": "string"}, list(range(1000)))

    assert len(errors[0]["message"]) <= schemas.MAX_ERROR_MESSAGE_CHARS + len("... [cut]")
    assert errors[0]["message"].endswith("... [cut]")
