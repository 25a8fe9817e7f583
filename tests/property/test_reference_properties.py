"""Properties of reference resolution over generated JSON values and paths."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger.domain.canonical import freeze
from flowledger.domain.references import resolve_references, scan_references
from flowledger.errors import MissingInputError

EXAMPLES = settings(max_examples=max(200, settings.default.max_examples), deadline=None)

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
# Keys the reference grammar can name: [A-Za-z_][A-Za-z0-9_-]*.
KEYS = st.builds(
    str.__add__, st.sampled_from(_FIRST), st.text(alphabet=_FIRST + "0123456789-", max_size=8)
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=25,
)
# Literal text around references: no "$", so no escape or reference can form by accident.
LITERALS = st.text(alphabet=st.characters(blacklist_characters="$"), max_size=12)


def _same_json(left: Any, right: Any) -> bool:
    # == alone holds 1 == 1.0 == True; the text tells them apart.
    return bool(left == right) and json.dumps(left, sort_keys=True) == json.dumps(
        right, sort_keys=True
    )


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@st.composite
def values_with_paths(draw: st.DrawFn) -> tuple[Any, str, Any]:
    """A JSON value, the text of a path into it, and the value at that path."""
    value = draw(JSON)
    current, text = value, ""
    while draw(st.booleans()):
        if isinstance(current, dict) and current:
            key = draw(st.sampled_from(sorted(current)))
            current, text = current[key], f"{text}.{key}"
        elif isinstance(current, list) and current:
            index = draw(st.integers(min_value=0, max_value=len(current) - 1))
            current, text = current[index], f"{text}[{index}]"
        else:
            break
    return value, text, current


@EXAMPLES
@given(values_with_paths())
def test_a_whole_reference_returns_the_value_at_its_path_with_its_type(
    case: tuple[Any, str, Any],
) -> None:
    value, path, expected = case
    for context in ({"input": value}, {"input": freeze(value)}):
        resolved = resolve_references("${input" + path + "}", context)
        assert type(resolved) is type(expected)
        assert _same_json(resolved, expected)


@EXAMPLES
@given(values_with_paths())
def test_a_step_reference_reads_the_step_output(case: tuple[Any, str, Any]) -> None:
    value, path, expected = case
    context = {"fetch-1": {"output": value, "status": "COMPLETED", "error": None}}
    assert _same_json(resolve_references("${fetch-1.output" + path + "}", context), expected)


@EXAMPLES
@given(st.dictionaries(KEYS, JSON, min_size=1, max_size=5), st.data())
def test_interpolation_equals_manual_concatenation(data_input: dict[str, Any], data: Any) -> None:
    keys = data.draw(st.lists(st.sampled_from(sorted(data_input)), min_size=1, max_size=5))
    literals = data.draw(st.lists(LITERALS, min_size=len(keys) + 1, max_size=len(keys) + 1))
    template = literals[0] + "".join(
        "${input." + key + "}" + literal for key, literal in zip(keys, literals[1:], strict=True)
    )
    expected = literals[0] + "".join(
        _render(data_input[key]) + literal for key, literal in zip(keys, literals[1:], strict=True)
    )
    if len(keys) == 1 and literals == ["", ""]:
        expected = data_input[keys[0]]  # one whole reference: the value itself
    assert _same_json(resolve_references(template, {"input": data_input}), expected)
    scan = scan_references(template)
    assert [reference.expression for _, reference in scan.references] == [
        f"input.{key}" for key in keys
    ]
    assert scan.problems == ()


PLAIN_JSON = st.recursive(
    st.one_of(SCALARS, st.text().filter(lambda text: "${" not in text)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=25,
).filter(lambda value: "${" not in json.dumps(value))


@EXAMPLES
@given(PLAIN_JSON)
def test_a_value_without_references_resolves_to_an_equal_plain_copy(value: Any) -> None:
    resolved = resolve_references(value, {})
    assert _same_json(resolved, value)
    frozen = resolve_references(freeze(value), {})
    assert _same_json(frozen, value)
    if isinstance(value, dict | list):
        assert resolved is not value
        assert type(frozen) is type(value)
    assert scan_references(value).references == ()


@EXAMPLES
@given(st.text())
def test_escaping_every_marker_gives_the_text_back(text: str) -> None:
    escaped = text.replace("${", "$${")
    assert resolve_references(escaped, {}) == text
    assert scan_references(escaped) == scan_references("")


@EXAMPLES
@given(st.text(alphabet="${}[]. _-0input", max_size=40), st.dictionaries(KEYS, SCALARS, max_size=3))
def test_any_text_resolves_or_fails_as_its_scan_predicts(text: str, data: Any) -> None:
    scan = scan_references(text)
    try:
        resolve_references(text, {"input": data})
    except MissingInputError as error:
        assert error.missing_var in [reference.expression for _, reference in scan.references]
    except ValueError as error:
        assert scan.problems
        assert str(error) == scan.problems[0][1]
    else:
        assert scan.problems == ()
