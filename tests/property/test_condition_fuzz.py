"""Fuzzing conditions: every text is either evaluated safely or refused, quickly.

The property, for any text at all: ``compile_condition`` refuses it with problems, or the
condition evaluates to plain data or raises ``ConditionError`` — never any other
exception, never a function, type or module, and within 50 ms. The time bound is the
security requirement that expensive expressions are refused, not a speed benchmark.
"""

from __future__ import annotations

import gc
import time
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.domain.conditions import Condition, compile_condition, evaluate_condition
from flowledger.errors import ConditionError

# Random text makes the parser warn (invalid escapes, "1if"); that is its business.
pytestmark = [
    pytest.mark.filterwarnings("ignore::SyntaxWarning"),
    pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning"),
]

TIME_LIMIT = 0.05  # seconds, per expression: compile and evaluate
EXAMPLES = settings(
    max_examples=max(300, settings.default.max_examples),
    deadline=None,  # measured by hand below, per example
    suppress_health_check=[HealthCheck.too_slow],
)

INPUT = {"amount": 150, "name": "Zoë", "tags": ["vip", "eu"], "nested": {"a": [1, {"b": None}]}}
FETCH = {"output": {"total": 3, "items": [{"sku": "a"}, {"sku": "b"}]}, "status": "COMPLETED"}
NAMES = {
    "input": INPUT,
    "output": FETCH["output"],
    "status": "COMPLETED",
    "error": None,
    "steps": {"fetch": {**FETCH, "error": None}},
}
REFERENCES = {"input": INPUT, "fetch": {**FETCH, "error": None}}
PLAIN_TYPES = (type(None), bool, int, float, complex, str)

ESCAPE_PAYLOADS = [
    "().__class__.__base__.__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "__import__('os')",
    "__import__('os').system('echo pwned')",
    "__builtins__",
    "input.__class__",
    "input.__class__.__mro__",
    "input.__dict__",
    "input['__class__']",
    "steps.fetch.__class__",
    "(1).__class__",
    "[].__class__",
    "output.mro()",
    "status.format",
    "input.keys",
    "input.get('amount')",
    "'{}'.format(input)",
    "'{0.__class__}'.format(input)",
    "'{x}'.format_map(input)",
    "'%s' % input",
    "'%999999999s' % 1",
    "'%*d' % (1000000000, 1)",
    "9**9**9",
    "10**10**10",
    "2**4096",
    "'a'*10**9",
    "[1]*10**9",
    "(1,)*10**9",
    "[[1]*50000]*50000",
    "1<<10**9",
    "10**1000 * 10**1000",
    "round(1, -10**9)",
    "int('9'*4301)",
    "str(3**2048)",
    "'a'*99999 + 'a'*99999",
    " and ".join(["'a'*99999"] * 12),
    " and ".join(["max('a'*99999)"] * 12),
    "'a'*99999 in 'a'*99999",
    "(" * 10_000 + ")" * 10_000,
    "(" * 10_000 + "1" + ")" * 10_000,
    "(" * 199 + "1" + ")" * 199,
    "[" * 499 + "]" * 499,
    "-" * 999 + "1",
    "not " * 249 + "1",
    "1" + "+1" * 499,
    "[" + "1," * 490 + "]",
    "'" + "a" * 100_000 + "'",
    "'" + "a" * 990 + "'",
    "'" + "\\N{LATIN SMALL LETTER A}" * 40 + "'",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in input]",
    "[x for x in range(10**9)]",
    "{x: x for x in input}",
    "(x for x in input)",
    "f'{input.__class__}'",
    "f'{9**9**9}'",
    "getattr(input, '__class__')",
    "eval('1')",
    "exec('1')",
    "open('/etc/passwd').read()",
    "globals()",
    "locals()",
    "vars()",
    "type(input)",
    "str",
    "len",
    "str.join",
    "max.__self__",
    "(x := 1)",
    "import os",
    "del input",
    "1; 2",
    "\x00",
    "input\x00.amount",
    "${input.__class__}",
    "${input}.__class__",
    "${input.amount}.__class__",
    "${ input }",
    "${input",
    "'${input.amount}'",
    "max(*[1]*10**9)",
    "min(input, key=len)",
    "len(input) if 1 else __import__('os')",
    "[str][0]",
    "{'a': str}['a']",
]


def _assert_plain(value: Any) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        assert not callable(item), item
        assert not isinstance(item, type | ModuleType), item
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list | tuple):  # tuples only as dict keys: {(1, 2): x}
            pending.extend(item)
        else:
            assert isinstance(item, PLAIN_TYPES), type(item)


def _run(expression: str) -> tuple[float, Condition | None, list[str], Any]:
    # Hypothesis keeps a large heap: a full collection of its garbage can land inside one
    # measurement. Collections are paused while timing; they do not belong to this code.
    gc.disable()
    try:
        started = time.perf_counter()
        condition, problems = compile_condition(expression)
        outcome: Any = problems
        if condition is not None:
            try:
                outcome = evaluate_condition(
                    condition, NAMES, REFERENCES, source="fetch", target="ship"
                )
            except ConditionError as error:
                outcome = error
        return time.perf_counter() - started, condition, problems, outcome
    finally:
        gc.enable()


def check(expression: str) -> None:
    elapsed, condition, problems, outcome = _run(expression)
    # Another process can stall one run on a shared machine; an expensive expression is
    # slow every time, so the best of three runs must still be under the bound.
    for _ in range(2):
        if elapsed < TIME_LIMIT:
            break
        elapsed = min(elapsed, _run(expression)[0])
    assert elapsed < TIME_LIMIT, f"{elapsed * 1000:.1f} ms for {expression[:200]!r}"
    if condition is None:
        assert problems
        assert all(isinstance(problem, str) and problem for problem in problems)
        return
    assert problems == []
    if isinstance(outcome, ConditionError):
        assert outcome.expression == expression
        assert (outcome.source, outcome.target) == ("fetch", "ship")
        assert outcome.reason
    else:
        truth, value = outcome
        assert isinstance(truth, bool)
        assert truth is bool(value)
        _assert_plain(value)


@pytest.mark.parametrize("expression", ESCAPE_PAYLOADS, ids=lambda text: text[:40])
def test_known_escape_payloads_are_refused_or_fail_safely(expression: str) -> None:
    check(expression)


@pytest.mark.parametrize(
    "expression",
    [p for p in ESCAPE_PAYLOADS if "__" in p or "format" in p or "import" in p],
    ids=lambda text: text[:40],
)
def test_no_escape_payload_ever_evaluates_to_something(expression: str) -> None:
    condition, _ = compile_condition(expression)
    if condition is not None:
        with pytest.raises(ConditionError):
            evaluate_condition(condition, NAMES, REFERENCES, source="fetch", target="ship")


@EXAMPLES
@given(st.text(max_size=300))
def test_any_text(expression: str) -> None:
    check(expression)


PYTHONISH = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz_ .,:()[]{}'\"0123456789+-*/%<>=!&|^~@$#\\\n",
    max_size=200,
)


@EXAMPLES
@given(PYTHONISH)
def test_python_looking_text(expression: str) -> None:
    check(expression)


# Two grammars: one built from allowed parts only, so most expressions compile and run
# (exercising the bounded evaluator), and a hostile one mixing in forbidden parts and
# known payloads (exercising the checker).
ALLOWED_NAMES = [
    *("input", "output", "result", "status", "error", "steps", "true", "false", "null"),
    *("True", "False", "None"),
]
ALLOWED_KEYS = [
    *("amount", "name", "tags", "nested", "a", "b", "items", "total", "sku", "output"),
    *("status", "fetch", "keys", "format", "upper"),
]
ALLOWED_FUNCTIONS = ["len", "int", "float", "str", "bool", "abs", "min", "max", "round"]
ALLOWED_FUNCTIONS += ["lower", "upper"]
BINARY = [
    *("+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^", "and", "or"),
    *("==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"),
]
REFERENCE_TEXTS = [
    *("${input.amount}", "${input.tags[0]}", "${input.nested.a[1].b}", "${fetch.output.items}"),
    *("${fetch.status}", "${fetch.error}", "${missing.output}", "${input.nope}", "${input}"),
]
SMALL_LITERALS = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=10).map(repr),
    st.sampled_from(["''", "'a' * 99999", "[1] * 50000", "{}", "[]", "()", "'%s'", "'{}'"]),
)


def _grammar(
    leaves: st.SearchStrategy[str],
    keys: list[str],
    functions: list[str],
    binary: list[str],
    hostile: bool,
) -> st.SearchStrategy[str]:
    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(children, children)
        shapes = [
            st.tuples(children, st.sampled_from(binary), children).map(" ".join).map("({})".format),
            st.tuples(st.sampled_from(["not ", "-", "+", "~"]), children).map("".join),
            st.tuples(children, st.sampled_from(keys)).map(".".join),
            pair.map(lambda t: f"{t[0]}[{t[1]}]"),
            pair.map(lambda t: f"{t[0]}[{t[1]}:]"),
            st.tuples(st.sampled_from(functions), st.lists(children, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            st.lists(children, max_size=4).map(lambda items: f"[{', '.join(items)}]"),
            st.lists(children, max_size=3).map(lambda items: f"({', '.join(items)},)"),
            pair.map(lambda t: f"{{{t[0]}: {t[1]}}}"),
            st.tuples(children, children, children).map(
                lambda t: f"({t[0]} if {t[1]} else {t[2]})"
            ),
        ]
        if hostile:
            shapes += [
                children.map(lambda c: f"(lambda: {c})"),
                children.map(lambda c: f"[x for x in {c}]"),
                children.map(lambda c: f"f'{{{c}}}'"),
                pair.map(lambda t: f"{t[0]}.{t[1]}()"),
                children.map(lambda c: f"{c}.__class__"),
            ]
        return st.one_of(shapes)

    return st.recursive(leaves, extend, max_leaves=25)


ALLOWED_GRAMMAR = _grammar(
    st.one_of(st.sampled_from(ALLOWED_NAMES + REFERENCE_TEXTS), SMALL_LITERALS),
    ALLOWED_KEYS,
    ALLOWED_FUNCTIONS,
    BINARY,
    hostile=False,
)
HOSTILE_GRAMMAR = _grammar(
    st.one_of(
        st.sampled_from(ALLOWED_NAMES + REFERENCE_TEXTS),
        SMALL_LITERALS,
        st.sampled_from(["foo", "_x", "__builtins__", "len", "getattr", "...", "1j", "b'x'"]),
        st.sampled_from(["${ input }", "${input", "$${input}", "${input.__class__}"]),
        st.sampled_from(ESCAPE_PAYLOADS),
    ),
    [*ALLOWED_KEYS, "__class__", "_x", "mro", "__subclasses__", "0"],
    [*ALLOWED_FUNCTIONS, "getattr", "eval", "exec", "open", "globals", "vars", "type", "print"],
    [*BINARY, "@", ":="],
    hostile=True,
)


@EXAMPLES
@given(ALLOWED_GRAMMAR)
def test_expressions_built_from_allowed_parts(expression: str) -> None:
    check(expression)


@EXAMPLES
@given(HOSTILE_GRAMMAR)
def test_expressions_mixing_in_forbidden_parts(expression: str) -> None:
    check(expression)
