"""Branch conditions: compiling (load time) and evaluating (run time)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import pytest

from flowledger.domain.conditions import (
    CONDITION_FUNCTIONS,
    CONDITION_NAMES,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    SOURCE_NAMES,
    Condition,
    compile_condition,
    evaluate_condition,
)
from flowledger.domain.references import Reference
from flowledger.errors import ConditionError

FETCH = {"output": {"total": 120, "items": [{"sku": "a"}, {"sku": "b"}]}, "status": "COMPLETED"}
CHARGE_ERROR = {"type": "CardDeclined", "message": "declined", "retryable": False}


def _names() -> dict[str, Any]:
    return {
        "input": {"amount": 150, "tags": ["vip", "eu"], "text": 'a" or 1 or "', "zero": 0},
        "output": {"count": 3, "items": [1, 2, 3], "empty": [], "keys": "data, not a method"},
        "status": "FAILED",
        "error": CHARGE_ERROR,
        "steps": {"fetch": {**FETCH, "error": None}, "charge-card": {"status": "FAILED"}},
    }


def _references() -> dict[str, Any]:
    names = _names()
    return {
        "input": names["input"],
        "fetch": {**FETCH, "error": None},
        "charge-card": {"output": None, "status": "FAILED", "error": CHARGE_ERROR},
    }


def evaluate(
    expression: str,
    names: dict[str, Any] | None = None,
    references: dict[str, Any] | None = None,
    *,
    source: str | None = "fetch",
) -> tuple[bool, Any]:
    condition, problems = compile_condition(expression)
    assert condition is not None, problems
    return evaluate_condition(
        condition,
        _names() if names is None else names,
        _references() if references is None else references,
        source=source,
        target="ship",
    )


def refusal(expression: str) -> list[str]:
    condition, problems = compile_condition(expression)
    assert condition is None
    assert problems
    return problems


def runtime_error(expression: str, **kwargs: Any) -> ConditionError:
    with pytest.raises(ConditionError) as raised:
        evaluate(expression, **kwargs)
    return raised.value


# -- names and values --------------------------------------------------------------------


def test_public_name_sets() -> None:
    assert {"input", "output", "result", "status", "error", "steps"} == CONDITION_NAMES
    assert {"output", "result", "status", "error"} == SOURCE_NAMES
    assert {
        *("abs", "bool", "float", "int", "len", "lower", "max", "min", "round", "str", "upper"),
    } == CONDITION_FUNCTIONS


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("input.amount > 100", True),
        ("input.amount > 200", False),
        ('input["amount"] == 150', True),
        ("output.count == 3", True),
        ("result.count == 3", True),
        ("result == output", True),
        ('status == "FAILED"', True),
        ('status in ["FAILED", "SKIPPED"]', True),
        ('status not in ("FAILED", "SKIPPED")', False),
        ('error.type == "CardDeclined"', True),
        ("error.retryable == false", True),
        ("steps.fetch.output.total >= 120", True),
        ('steps.fetch.output.items[1].sku == "b"', True),
        ('steps["charge-card"].status == "FAILED"', True),
        ("steps.fetch.error is null", True),
        ('"vip" in input.tags', True),
        ('"x" not in input.tags', True),
        ("output.items[-1] == 3", True),
        ("output.items[0:2] == [1, 2]", True),
        ("output.keys == 'data, not a method'", True),
        ("true and not false", True),
        ("null is None", True),
        ("True != False", True),
        ("1 < input.amount < 200", True),
        ("input.amount // 7 == 21 and input.amount % 7 == 3", True),
        ("2 ** 10 == 1024 and 1 << 4 == 16 and 256 >> 4 == 16", True),
        ("(6 & 3) == 2 and (6 | 3) == 7 and (6 ^ 3) == 5 and ~0 == -1", True),
        ("-input.amount == -150 and +1 == 1", True),
        ("input.amount / 4 == 37.5 and input.amount - 50 == 100", True),
        ("'yes' if input.amount > 100 else 'no'", True),
        ("output == {'count': 3, 'items': [1, 2, 3], 'empty': [], 'keys': output.keys}", True),
        ("{} == {}", True),
        ("'ab' + 'cd' == 'abcd' and 'ab' * 2 == 'abab' and 2 * [0] == [0, 0]", True),
    ],
)
def test_condition_names_and_operators(expression: str, expected: bool) -> None:
    assert evaluate(expression)[0] is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("len(input.tags) == 2", True),
        ('int("12") + int(2.9) == 14', True),
        ('float("1.5") == 1.5', True),
        ('str(input.amount) == "150" and str(null) == "None"', True),
        ("bool(output.empty) == false and bool(1)", True),
        ("abs(-3) == 3", True),
        ("min(output.items) == 1 and max(3, 9, 4) == 9", True),
        ("round(2.567, 2) == 2.57 and round(2.5) == 2", True),
        ('lower("ÀbC") == "àbc" and upper("abc") == "ABC"', True),
    ],
)
def test_functions(expression: str, expected: bool) -> None:
    assert evaluate(expression)[0] is expected


@pytest.mark.parametrize(
    ("expression", "truth", "value"),
    [
        ("output.items", True, [1, 2, 3]),
        ("output.empty", False, []),
        ("input.zero", False, 0),
        ("input.amount", True, 150),
        ('""', False, ""),
        ("error", True, CHARGE_ERROR),
        ("null", False, None),
        ("input.zero or 'fallback'", True, "fallback"),
        ("input.amount and input.zero", False, 0),
    ],
)
def test_non_boolean_values_are_taken_by_truthiness(
    expression: str, truth: bool, value: Any
) -> None:
    assert evaluate(expression) == (truth, value)


def test_result_is_always_plain_data() -> None:
    names = {"output": MappingProxyType({"items": (1, (2, 3)), "obj": MappingProxyType({"a": 1})})}
    assert evaluate("output.items", names) == (True, [1, [2, 3]])
    _, value = evaluate("output.obj", names)
    assert value == {"a": 1}
    assert type(value) is dict


def test_frozen_data_compares_as_the_json_it_stands_for() -> None:
    frozen = MappingProxyType({"items": (1, 2), "pairs": ((1, 2),), "obj": MappingProxyType({})})
    names = {"output": frozen, "input": {"items": [1, 2]}}
    assert evaluate("output.items == [1, 2]", names)[0] is True
    assert evaluate("output.items == input.items", names)[0] is True
    assert evaluate("[1, 2] in output.pairs", names)[0] is True
    assert evaluate("(1, 2) not in output.pairs", names)[0] is False
    assert evaluate("output.obj == {}", names)[0] is True
    assert evaluate("output.items < [1, 3]", names)[0] is True
    assert evaluate("output.items + [3] == [1, 2, 3]", names)[0] is True
    assert evaluate("(0,) + output.items == (0, 1, 2)", names)[0] is True


def test_result_defaults_to_output_but_an_explicit_result_wins() -> None:
    assert evaluate("result", {"output": 1})[1] == 1
    assert evaluate("result", {"output": 1, "result": 2})[1] == 2


def test_unknown_keys_in_names_are_ignored() -> None:
    error = runtime_error("input", names={"input_extra": 1})
    assert "'input' is not available" in error.reason


# -- ${...} references -------------------------------------------------------------------


def test_references_are_bound_as_values() -> None:
    assert evaluate("${fetch.output.total} > 100")[0] is True
    assert evaluate("${fetch.output.items}")[1] == FETCH["output"]["items"]
    assert evaluate('${charge-card.error.type} == "CardDeclined"')[0] is True
    assert evaluate('${fetch.status} == "COMPLETED" and ${input.amount} == 150')[0] is True
    assert evaluate("${fetch.output.items}[1].sku == 'b'")[0] is True
    assert evaluate("${fetch.output}.total == 120")[0] is True
    assert evaluate("output.items[${input.zero}] == 1")[0] is True
    assert evaluate("len(${input.tags}) == 2 and ${input} == input")[0] is True


def test_a_referenced_string_is_a_value_never_reparsed() -> None:
    # Pasted as text, this value would turn the condition into `"a" or 1 or "" == ...`.
    assert evaluate('${input.text} == "nothing"')[0] is False
    assert evaluate("${input.text}")[1] == 'a" or 1 or "'
    references = {"input": {"code": "__import__('os').system('true')"}}
    assert evaluate("${input.code}", references=references)[1] == references["input"]["code"]


def test_a_reference_value_containing_a_reference_is_not_resolved_again() -> None:
    references = {"input": {"a": "${input.b}", "b": "secret"}}
    assert evaluate("${input.a}", references=references)[1] == "${input.b}"


def test_compile_lists_distinct_references_and_bare_names() -> None:
    expression = (
        "${fetch.output.total} > 1 and ${fetch.output.total} < 9 and status == 'x' or"
        " ${input.a} or steps.fetch.output or true"
    )
    assert compile_condition(expression) == (
        Condition(
            expression=expression,
            references=(
                Reference("fetch.output.total", "fetch", ("output", "total")),
                Reference("input.a", "input", ("a",)),
            ),
            names=frozenset({"status", "steps"}),
            step_ids=frozenset({"fetch"}),
        ),
        [],
    )


@pytest.mark.parametrize(
    ("expression", "step_ids"),
    [
        ("steps.fetch", {"fetch"}),
        ('steps["fetch"]', {"fetch"}),
        ("steps.fetch.output.total > 1", {"fetch"}),
        ("steps['fetch']['status'] == 'COMPLETED'", {"fetch"}),
        ('steps["charge-card"].status == steps.fetch.status', {"charge-card", "fetch"}),
        ("steps.fetch.output.items[len(steps['charge-card'].error)]", {"fetch", "charge-card"}),
        ("steps.fetch.status and steps['fetch'].output", {"fetch"}),
        ("${fetch.output.total} > 1 and steps.later", {"later"}),
        ("steps['not a step id']", {"not a step id"}),
        ("input.steps.fetch and output['steps'] and 'steps' == status", set()),
        ("len(steps) > 1 and 'fetch' in steps", set()),
        ("${fetch.output.total} > 1", set()),
    ],
)
def test_compile_lists_the_step_ids_read_through_steps(expression: str, step_ids: set[str]) -> None:
    condition, problems = compile_condition(expression)
    assert problems == []
    assert condition is not None
    assert condition.step_ids == step_ids


@pytest.mark.parametrize(
    "expression",
    [
        "steps[input.k]",
        "steps[${input.k}].status",
        "steps['fe' + 'tch'].output",
        "steps[0]",
        "steps[:1]",
        "steps[status if true else 'fetch']",
    ],
)
def test_steps_indexed_by_anything_but_a_literal_id_is_refused(expression: str) -> None:
    assert refusal(expression) == [
        "steps must be indexed by a literal step id, as in steps.fetch or steps['fetch']"
    ]


def test_a_dynamic_steps_index_is_reported_with_the_other_problems() -> None:
    problems = refusal("steps[input.k] and steps[output.k] and amount")
    assert problems[0] == (
        "steps must be indexed by a literal step id, as in steps.fetch or steps['fetch']"
    )
    assert len(problems) == 2
    assert "unknown name 'amount'" in problems[1]


def test_an_escaped_reference_is_literal_text_in_strings() -> None:
    assert evaluate('"$${x}" == "$" + "{x}"')[0] is True


def test_a_missing_reference_is_a_condition_error_naming_it() -> None:
    error = runtime_error("${fetch.output.nope} > 1")
    assert "${fetch.output.nope}" in error.reason
    assert "no key 'nope'" in error.reason
    error = runtime_error("${later.output} == 1")
    assert "${later.output}" in error.reason


# -- refused at compile time -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("x" * (MAX_EXPRESSION_LENGTH + 1), "too long"),
        ("input.amount >", "syntax error"),
        ("a = 1", "syntax error"),
        ("x := 1", "syntax error"),
        ("(x := 1)", "assignment expressions"),
        ("import os", "syntax error"),
        ("1; 2", "syntax error"),
        ("amount > 1", "unknown name 'amount'"),
        ("True.real", "literals have no members"),
        ("'{}'.format(input)", "only these functions can be called"),
        ("input.keys()", "only these functions can be called"),
        ("getattr(input, 'a')", "only these functions can be called"),
        ("eval('1')", "only these functions can be called"),
        ("exec('1')", "only these functions can be called"),
        ("open('/etc/passwd')", "only these functions can be called"),
        ("globals()", "only these functions can be called"),
        ("vars()", "only these functions can be called"),
        ("__import__('os')", "only these functions can be called"),
        ("(lambda: 1)()", "only these functions can be called"),
        ("len", "len is a function"),
        ("[str][0](1)", "only these functions can be called"),
        ("max(input, key=len)", "keyword arguments"),
        ("max(*input.tags)", "* unpackings"),
        ("[*input.tags]", "* unpackings"),
        ("{**input}", "unpacking with **"),
        ("lambda: 1", "lambda functions"),
        ("[x for x in input.tags]", "comprehensions"),
        ("(x for x in input.tags)", "comprehensions"),
        ("{x: 1 for x in input.tags}", "comprehensions"),
        ("{x for x in input.tags}", "comprehensions"),
        ("{1, 2}", "set literals"),
        ("f'{input}'", "f-strings"),
        ("input @ input", "MatMult operator"),
        ("b'x'", "bytes literals"),
        ("1j", "complex literals"),
        ("...", "ellipsis literals"),
        ("9223372036854775808", "integer literals are limited"),
        ("input.__class__", "names starting with '_'"),
        ("(1).__class__", "names starting with '_'"),
        ("input._private", "names starting with '_'"),
        ("_ref0", "names starting with '_'"),
        ("__builtins__", "names starting with '_'"),
        ("'${input.a}' == 'x'", "inside a string literal"),
        ("input.${input.a}", "cannot be a member name"),
        ("${input.a} # ${input.b}", "${input.b} must be used as a value"),
        ("${ input.a } > 1", "white space"),
        ("${input.a > 1", "unclosed"),
        ("${fetch} == 1", ".output, .status or .error"),
        ("${input.a}${input.b}", "syntax error"),
        ("await input", "Await expressions are not allowed"),
        ("(yield)", "Yield expressions are not allowed"),
    ],
)
def test_refused_at_compile_time(expression: str, problem: str) -> None:
    assert any(problem in each for each in refusal(expression)), refusal(expression)


def test_compile_reports_every_problem_not_just_the_first() -> None:
    problems = refusal("amount > 1 and input.__class__ and ${ x } and open(1) and [x for x in y]")
    assert len(problems) == 5
    assert any("unknown name 'amount'" in each for each in problems)
    assert any("'_'" in each for each in problems)
    assert any("white space" in each for each in problems)
    assert any("only these functions" in each for each in problems)
    assert any("comprehensions" in each for each in problems)


def test_a_method_call_is_refused_naming_its_private_attributes() -> None:
    problems = refusal("().__class__.__base__.__subclasses__()")
    assert any("__subclasses__" in each for each in problems)
    assert any("__class__" in each for each in problems)


def test_syntax_errors_give_a_column_when_the_text_is_unchanged() -> None:
    assert refusal("  1 +* 2") == ["syntax error: invalid syntax (column 6)"]
    assert refusal("${input.a} +* 2") == ["syntax error: invalid syntax"]


def test_deep_nesting_and_too_many_parts_are_refused() -> None:
    assert any("nested too deeply" in p for p in refusal("-" * (MAX_DEPTH + 1) + "1"))
    assert any("nested too deeply" in p for p in refusal("not " * 200 + "true"))
    assert any("too many nested parentheses" in p for p in refusal("(" * 300 + "1" + ")" * 300))
    assert any("too complex (more than 300 parts)" in p for p in refusal("[" + "1," * 400 + "]"))
    assert evaluate("-" * (MAX_DEPTH - 1) + "1")[1] == -1


def test_long_and_deep_payloads_are_refused_without_parsing() -> None:
    assert refusal("(" * 10_000 + ")" * 10_000) == [
        "the condition is too long (20,000 characters, at most 1,000)"
    ]


def test_a_non_string_condition_is_refused() -> None:
    assert compile_condition(True) == (None, ["a condition must be a string"])  # type: ignore[arg-type]


def test_leading_white_space_and_line_breaks_in_parentheses_are_fine() -> None:
    assert evaluate("  input.amount > 1")[0] is True
    assert evaluate("(input.amount > 1\n and status == 'FAILED')")[0] is True


# -- failures at run time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ('"a" < 1', "TypeError: '<' not supported"),
        ("input.amount + 'x'", "TypeError"),
        ("1 / input.zero", "ZeroDivisionError"),
        ("1 % 0", "ZeroDivisionError"),
        ("input.missing == 1", "no key 'missing' in input"),
        ("input['missing']", "no key 'missing' in input"),
        ("steps.nope.status", "no key 'nope' in steps"),
        ("${input}.missing", "no key 'missing' in ${input}"),
        ("output.items[7]", "index 7 is out of range for output.items (length 3)"),
        ("output.items['a']", "TypeError"),
        ("output.items.first", "output.items is a list: '.first' reads a key of an object"),
        ("input.amount.value", "input.amount is a number"),
        ("input.amount[0]", "input.amount is a number: it has no items"),
        ("error.type.x", "error.type is a string"),
        ("status.x", "status is a string: '.x' reads a key of an object"),
        ("error.retryable.x", "error.retryable is a boolean"),
        ("output.items[[]]", "TypeError"),
        ("input[[]]", "TypeError"),
        ("1 in input.amount", "TypeError"),
        ("int('x')", "ValueError"),
        ("max()", "TypeError"),
        ("min([])", "ValueError"),
        ("lower(1)", "lower() expects a string"),
        ("upper(None)", "upper() expects a string"),
        ("str([1])", "str() converts a single"),
        ("round(1.5, 'x')", "round() takes at most 100 digits"),
        ("round(1, -1000000000)", "round() takes at most 100 digits"),
        ("9 ** 9 ** 9", "the power would exceed 4096 bits"),
        ("10 ** 5000", "the power would exceed 4096 bits"),
        ("1 << 10 ** 9", "the shift would exceed 4096 bits"),
        ("(3 ** 2000) * (3 ** 2000)", "the product would exceed 4096 bits"),
        ("1 >> -1", "ValueError"),
        ("'a' * 10 ** 9", "would build a value of more than 100,000"),
        ("10 ** 9 * 'a'", "would build a value of more than 100,000"),
        ("[1] * 10 ** 9", "would build a value of more than 100,000"),
        ("[[0] * 50000] * 50000", "would build a value of more than 100,000"),
        ("('a' * 99999) + ('a' * 99999)", "would build a value of more than 100,000"),
        (" and ".join(["'a' * 99999"] * 4), "builds more than 300,000 elements"),
        ("'%s' % input", "string formatting with % is not allowed"),
        ("'%999999999d' % 1", "string formatting with % is not allowed"),
        ("2.0 ** 10000", "OverflowError"),
    ],
)
def test_runtime_failures_are_condition_errors(expression: str, reason: str) -> None:
    assert reason in runtime_error(expression).reason


def test_a_source_name_without_a_source_is_a_condition_error() -> None:
    error = runtime_error("output.count > 1", names={"input": {}}, source=None)
    assert "'output' is not available for this condition" in error.reason
    assert error.source is None
    assert "on step ship" in str(error)


def test_the_error_carries_expression_source_and_target() -> None:
    error = runtime_error("1 / 0")
    assert (error.expression, error.source, error.target) == ("1 / 0", "fetch", "ship")
    assert (
        str(error)
        == "condition '1 / 0' on fetch -> ship failed: ZeroDivisionError: division by zero"
    )
    assert isinstance(error.__cause__, ZeroDivisionError)


def test_a_hand_made_condition_is_checked_again_before_it_runs() -> None:
    forged = Condition("__import__('os').system('true')", (), frozenset())
    with pytest.raises(ConditionError, match="invalid condition: only these functions"):
        evaluate_condition(forged, _names(), _references(), source=None, target="t")
    with pytest.raises(ConditionError, match="empty"):
        evaluate_condition(Condition("", (), frozenset()), {}, {}, source=None, target="t")


def test_a_callable_in_the_data_never_becomes_a_value() -> None:
    error = runtime_error("input.f", names={"input": {"f": print}})
    assert "functions, types and modules are not values" in error.reason
    error = runtime_error("input", names={"input": threading})
    assert "functions, types and modules are not values" in error.reason


def test_evaluations_on_several_threads_do_not_mix_their_names() -> None:
    condition, _ = compile_condition("input.n * 2 + ${input.n}")
    assert condition is not None

    def run(n: int) -> int:
        names = {"input": {"n": n}}
        return int(evaluate_condition(condition, names, names, source=None, target="t")[1])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(2000)))
    assert results == [3 * n for n in range(2000)]


@pytest.mark.parametrize(
    "expression",
    [
        "2 ** -1 == 0.5 and 1 ** 1000000000000000000 == 1 and (-1) ** 1000001 == -1",
        "'ab' * 0 == '' and -1 * [1] == [] and 0 << 100000 == 0",
        "[{'a': 1}] * 2 == [{'a': 1}, {'a': 1}]",
        "len([[0] * 40000] * 2) == 2",
    ],
)
def test_bounded_operators_still_compute_what_fits(expression: str) -> None:
    assert evaluate(expression) == (True, True)


@pytest.mark.parametrize(
    "expression",
    ["[{'a': 'x' * 50000}] * 3", "[[0] * 60000] * 2", "[[[0] * 30000] * 2] * 2"],
)
def test_repeating_nested_values_counts_everything_inside(expression: str) -> None:
    assert "would build a value of more than 100,000" in runtime_error(expression).reason


def test_reading_a_key_of_null_says_so() -> None:
    error = runtime_error("error.type == 'x'", names={"error": None})
    assert error.reason == "error is null: '.type' reads a key of an object"


def test_an_unparseable_text_is_a_problem_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import ast

    def overflow(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError

    monkeypatch.setattr(ast, "parse", overflow)
    assert refusal("1 + 1 == 2 # unparseable") == ["the condition is too complex to parse"]


def test_the_evaluator_refuses_nodes_outside_the_whitelist_even_if_unchecked() -> None:
    # The checker refuses these at compile time; this is the evaluator's own line.
    import ast

    from flowledger.domain.condition_evaluator import thread_evaluator

    tree = ast.parse("{1, 2}", mode="eval").body
    with pytest.raises(Exception, match="Set is not allowed"):
        thread_evaluator().eval("{1, 2}", previously_parsed=tree)
