"""Parameter references: parsing, scanning at load time, resolving at run time."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import pytest

from flowledger.domain.references import (
    MalformedReference,
    Reference,
    ReferenceScan,
    lookup_reference,
    parse_reference,
    parse_template,
    resolve_references,
    scan_references,
)
from flowledger.errors import MissingInputError


def _context() -> dict[str, Any]:
    return {
        "input": {"order": {"id": 42, "lines": [{"sku": "a-1"}, {"sku": "b-2"}]}, "none": None},
        "fetch-data": {
            "output": {"items": [{"name": "first"}, {"name": "second"}], "total": 2.5},
            "status": "COMPLETED",
            "error": None,
        },
        "charge": {
            "output": None,
            "status": "FAILED",
            "error": {"type": "CardDeclined", "message": "no", "retryable": False},
        },
    }


# -- parse_reference ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "root", "path"),
    [
        ("input", "input", ()),
        ("input.order.id", "input", ("order", "id")),
        ("input.order.lines[1].sku", "input", ("order", "lines", 1, "sku")),
        ("input[0]", "input", (0,)),
        ("fetch-data.output.items[0].name", "fetch-data", ("output", "items", 0, "name")),
        ("_step_2.status", "_step_2", ("status",)),
        ("charge.error.message", "charge", ("error", "message")),
        ("a.output.x-y.z_1[10]", "a", ("output", "x-y", "z_1", 10)),
    ],
)
def test_parse_reference_splits_root_and_path(expression: str, root: str, path: tuple) -> None:
    assert parse_reference(expression) == Reference(expression, root, path)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty reference"),
        (" input.a", "white space"),
        ("input.a ", "white space"),
        ("input. a", "white space"),
        ("1step.output", "starts with 'input' or a step id"),
        ("-step.output", "starts with 'input' or a step id"),
        (".output", "starts with 'input' or a step id"),
        ("fetch", "must continue with .output, .status or .error"),
        ("fetch.result", "must continue with .output, .status or .error"),
        ("fetch[0]", "must continue with .output, .status or .error"),
        ("fetch.status.code", "nothing can follow '.status'"),
        ("input.0", "write [N] for a list index"),
        ("input.a[-1]", "non-negative integer in brackets"),
        ("input.a[x]", "non-negative integer in brackets"),
        ("input.a[1", "non-negative integer in brackets"),
        ("input.", "expected '.name' or '[index]'"),
        ("input..a", "expected '.name' or '[index]'"),
        ("input.a!", "expected '.name' or '[index]'"),
        ("input.a[٣]", "non-negative integer in brackets"),  # ASCII digits only
        ("input.${x", "cannot appear inside a reference"),
    ],
)
def test_parse_reference_refuses_malformed_text_and_says_why(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_reference(expression)


# -- parse_template ----------------------------------------------------------------------


def test_parse_template_splits_text_and_undoes_escapes() -> None:
    parts = parse_template("a $${literal} ${input.x} b $5 $$ ${input}")
    assert parts == (
        "a ${literal} ",
        Reference("input.x", "input", ("x",)),
        " b $5 $$ ",
        Reference("input", "input", ()),
    )


def test_parse_template_reports_unclosed_and_malformed_references() -> None:
    assert parse_template("x ${ input } y ${input.a") == (
        "x ",
        MalformedReference("${ input }", "white space is not allowed inside '${...}'"),
        " y ",
        MalformedReference("${input.a", "unclosed '${' (no '}' follows)"),
    )


def test_parse_template_of_long_strings_is_not_cached_but_still_parsed() -> None:
    text = "x" * 5000 + "${input.a}"
    assert parse_template(text) == ("x" * 5000, Reference("input.a", "input", ("a",)))


# -- scan_references ---------------------------------------------------------------------


def test_scan_finds_references_with_their_relative_paths() -> None:
    value = {
        "url": "https://x/${input.order.id}/${fetch-data.output.total}",
        "lines": ["plain", {"sku": "${input.order.lines[0].sku}"}],
        "odd key": "${charge.status}",
        "count": 3,
        "${input.key}": "keys are names, not templates",
    }
    scan = scan_references(value)
    assert [(path, ref.expression) for path, ref in scan.references] == [
        (".url", "input.order.id"),
        (".url", "fetch-data.output.total"),
        (".lines[1].sku", "input.order.lines[0].sku"),
        ("['odd key']", "charge.status"),
    ]
    assert scan.problems == ()


def test_scan_of_a_bare_string_uses_the_empty_path() -> None:
    scan = scan_references("${input}")
    assert scan == ReferenceScan(references=(("", Reference("input", "input", ())),), problems=())


def test_scan_reports_every_malformed_reference_with_its_path() -> None:
    scan = scan_references(
        MappingProxyType({"a": ("${ input.a }", "ok ${input.b}"), "b": {"c": "${fetch}"}})
    )
    assert [ref.expression for _, ref in scan.references] == ["input.b"]
    assert [path for path, _ in scan.problems] == [".a[0]", ".b.c"]
    assert "'${ input.a }'" in scan.problems[0][1]
    assert "white space" in scan.problems[0][1]
    assert ".output, .status or .error" in scan.problems[1][1]


def test_scan_reports_an_unclosed_reference() -> None:
    scan = scan_references(["fine", "oops ${input.a and more"])
    assert scan.references == ()
    assert scan.problems[0][0] == "[1]"
    assert "unclosed" in scan.problems[0][1]


def test_scan_treats_escaped_references_as_text() -> None:
    assert scan_references({"shell": "echo $${HOME} $$ $x"}) == ReferenceScan((), ())


# -- resolve_references ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${input.order}", {"id": 42, "lines": [{"sku": "a-1"}, {"sku": "b-2"}]}),
        ("${input.order.lines}", [{"sku": "a-1"}, {"sku": "b-2"}]),
        ("${input.order.id}", 42),
        ("${fetch-data.output.total}", 2.5),
        ("${input.none}", None),
        ("${charge.output}", None),
        ("${charge.error}", {"type": "CardDeclined", "message": "no", "retryable": False}),
        ("${charge.error.retryable}", False),
        ("${fetch-data.output.items[1].name}", "second"),
        ("${fetch-data.status}", "COMPLETED"),
    ],
)
def test_a_whole_reference_keeps_the_value_and_its_type(template: str, expected: Any) -> None:
    resolved = resolve_references(template, _context())
    assert resolved == expected
    assert type(resolved) is type(expected)


def test_a_whole_reference_returns_an_independent_plain_copy() -> None:
    context = {"input": MappingProxyType({"rows": ({"a": 1},), "flag": True})}
    resolved = resolve_references("${input}", context)
    assert resolved == {"rows": [{"a": 1}], "flag": True}
    assert type(resolved) is dict
    assert type(resolved["rows"]) is list
    resolved["rows"][0]["a"] = 99
    assert context["input"]["rows"][0]["a"] == 1


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("order ${input.order.id}!", "order 42!"),
        ("sku=${input.order.lines[0].sku}", "sku=a-1"),
        ("${fetch-data.status}/${charge.status}", "COMPLETED/FAILED"),
        ("total: ${fetch-data.output.total}", "total: 2.5"),
        ("none: ${input.none}", "none: null"),
        ("retry: ${charge.error.retryable}", "retry: false"),
        ("item: ${fetch-data.output.items[0]}", 'item: {"name":"first"}'),
        ("skus: ${input.order.lines}", 'skus: [{"sku":"a-1"},{"sku":"b-2"}]'),
        ("err=${charge.error}", 'err={"message":"no","retryable":false,"type":"CardDeclined"}'),
        (" ${input.order.id}", " 42"),
        ("cost $5, literal $${input.order.id}", "cost $5, literal ${input.order.id}"),
        ("$${input.x}", "${input.x}"),
        ("$$${input.order.id}", "$${input.order.id}"),
    ],
)
def test_references_inside_longer_strings_are_interpolated(template: str, expected: str) -> None:
    assert resolve_references(template, _context()) == expected


def test_interpolation_keeps_unicode_and_true_booleans() -> None:
    context = {"input": {"name": "Zoë", "ok": True, "obj": {"é": 1}}}
    resolved = resolve_references("${input.name} ${input.ok} ${input.obj}", context)
    assert resolved == 'Zoë true {"é":1}'


def test_containers_are_resolved_recursively_into_plain_dicts_and_lists() -> None:
    template = MappingProxyType(
        {
            "id": "${input.order.id}",
            "names": ("${fetch-data.output.items[0].name}", "x-${fetch-data.output.items[1].name}"),
            "deep": [{"k": ["${charge.status}", 7]}],
            "n": 1,
            "none": None,
        }
    )
    resolved = resolve_references(template, _context())
    assert resolved == {
        "id": 42,
        "names": ["first", "x-second"],
        "deep": [{"k": ["FAILED", 7]}],
        "n": 1,
        "none": None,
    }
    assert type(resolved) is dict
    assert type(resolved["names"]) is list


@pytest.mark.parametrize("scalar", [0, 1.5, True, None, "plain text", b"${input}"])
def test_scalars_and_plain_strings_come_back_unchanged(scalar: Any) -> None:
    assert resolve_references(scalar, _context()) == scalar


def test_dict_keys_are_not_resolved() -> None:
    assert resolve_references({"${input.order.id}": 1}, _context()) == {"${input.order.id}": 1}


def test_substituted_text_is_never_resolved_again() -> None:
    context = {"input": {"evil": "${input.secret}", "secret": "s3cret"}}
    assert resolve_references("${input.evil}", context) == "${input.secret}"
    assert resolve_references("x ${input.evil} y", context) == "x ${input.secret} y"
    assert resolve_references({"a": ["${input.evil}"]}, context) == {"a": ["${input.secret}"]}


@pytest.mark.parametrize(
    ("template", "missing", "detail"),
    [
        ("${nope.output}", "nope.output", "nope: no result yet"),
        ("${input.order.missing}", "input.order.missing", "no key 'missing' in input.order"),
        ("${input.order.lines[5].sku}", "input.order.lines[5].sku", "index 5 is out of range"),
        (
            "${input.order.lines[2]}",
            "input.order.lines[2]",
            "out of range for input.order.lines (length 2)",
        ),
        ("${input.order.id.x}", "input.order.id.x", "input.order.id is a number, not an object"),
        ("${input.order[0]}", "input.order[0]", "input.order is an object, not a list"),
        ("${input.none.x}", "input.none.x", "input.none is null, not an object"),
        ("${charge.output.x}", "charge.output.x", "charge.output is null"),
        (
            "${fetch-data.output.items[0].name[0]}",
            "fetch-data.output.items[0].name[0]",
            "is a string, not a list",
        ),
        ("${input.order.lines.sku}", "input.order.lines.sku", "is a list, not an object"),
        ("text ${input.gone} text", "input.gone", "no key 'gone' in input"),
    ],
)
def test_a_missing_value_raises_missing_input_error_naming_it(
    template: str, missing: str, detail: str
) -> None:
    with pytest.raises(MissingInputError) as raised:
        resolve_references({"p": [template]}, _context())
    assert raised.value.missing_var == missing
    assert detail in str(raised.value)


def test_a_missing_input_root_is_missing() -> None:
    with pytest.raises(MissingInputError) as raised:
        resolve_references("${input.a}", {})
    assert raised.value.missing_var == "input.a"
    assert "no input" in str(raised.value)


def test_a_malformed_reference_at_run_time_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="white space"):
        resolve_references("x ${ input }", _context())
    with pytest.raises(ValueError, match="unclosed"):
        resolve_references("${input", _context())


def test_lookup_reference_returns_the_stored_object() -> None:
    context = _context()
    found = lookup_reference(parse_reference("input.order"), context)
    assert found is context["input"]["order"]


def test_reference_values_can_be_odd_kinds() -> None:
    with pytest.raises(MissingInputError, match="is a boolean, not an object"):
        resolve_references("${input.flag.x}", {"input": {"flag": True}})
    with pytest.raises(MissingInputError, match="is a value, not an object"):
        resolve_references("${input.when.x}", {"input": {"when": object()}})


def test_other_mapping_and_sequence_kinds_are_copied_plain_too() -> None:
    from collections import OrderedDict, UserList

    context = {"input": OrderedDict(rows=UserList([OrderedDict(a=1)]))}
    resolved = resolve_references("${input}", context)
    assert resolved == {"rows": [{"a": 1}]}
    assert type(resolved) is dict
    assert type(resolved["rows"]) is list
    assert type(resolved["rows"][0]) is dict


def test_a_str_subclass_is_resolved_like_a_string() -> None:
    from enum import StrEnum

    class Template(StrEnum):
        GREETING = "hello ${input.name}"

    assert resolve_references([Template.GREETING], {"input": {"name": "Ada"}}) == ["hello Ada"]


def test_an_unclosed_reference_is_reported_once_however_many_follow() -> None:
    assert parse_template("x ${a ${b ${c") == (
        "x ",
        MalformedReference("${a ${b ${c", "unclosed '${' (no '}' follows)"),
    )
    many = "${" * 50_000  # would take minutes if each "${" rescanned the rest
    assert len(scan_references(many).problems) == 1
