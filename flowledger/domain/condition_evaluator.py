"""The bounded evaluator behind branch conditions: limits, safe functions, operators.

:mod:`flowledger.domain.conditions` parses and checks a condition when a definition loads;
this module evaluates the checked tree at run time. The evaluator is a ``simpleeval``
evaluator reduced to the node types a condition may contain, whose operators are all
bounded: each limit (``MAX_*`` below) is checked before the work it bounds is done, so a
condition can neither build a huge value nor compute a huge number. Nothing here sees
user text as code: it receives a tree that :func:`ast.parse` built and the checker
accepted, and evaluates it again against its own whitelist all the same.

The limits that bound the text and its tree (length, depth, parts, integer literals) are
enforced by the checker; they are kept here so that every limit is in one table.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from simpleeval import DEFAULT_OPERATORS, SimpleEval

from flowledger.domain.references import plain_copy

# Limits. Sizes count elements, or characters for a string; a nested list counts itself
# and everything in it. Integer bits are estimated from the operands, before computing.
MAX_EXPRESSION_LENGTH = 1_000  # characters in a condition
MAX_DEPTH = 32  # levels of nesting in its expression tree
MAX_NODES = 300  # parts (names, literals, operations...) in it
MAX_INT_LITERAL = 2**63 - 1  # largest integer literal, in absolute value
MAX_INT_BITS = 4_096  # largest integer that *, ** and << may build
MAX_VALUE_SIZE = 100_000  # largest string or list that +, * and literals may build
MAX_TOTAL_SIZE = 300_000  # all strings and lists one evaluation builds, together
MAX_ROUND_DIGITS = 100  # round(1, -10**9) would compute 10**(10**9)

CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
"""Names bound in every evaluation, JSON style, besides Python's ``True``/``False``/``None``."""


class Refusal(Exception):
    """An evaluation refused or failed for a reason worth telling the author as is.

    Raised only while evaluating; the caller turns it into a
    :class:`~flowledger.errors.ConditionError` whose reason is this message, unprefixed.
    """


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _is_container(value: Any) -> bool:
    return isinstance(value, Mapping) or _is_sequence(value)


def _to_str(value: Any) -> str:
    # Only scalars: the text of a nested structure could be far larger than its size.
    if value is None or isinstance(value, str | int | float):
        return str(value)
    raise Refusal("str() converts a single string, number, boolean or null")


def _text_function(name: str, method: Callable[[str], str]) -> Callable[[Any], str]:
    def function(text: Any) -> str:
        if not isinstance(text, str):
            raise Refusal(f"{name}() expects a string")
        return method(text)

    function.__name__ = function.__qualname__ = name  # for Python's own argument errors
    return function


def _round(number: Any, ndigits: Any = None) -> Any:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS):
        raise Refusal(f"round() takes at most {MAX_ROUND_DIGITS} digits")
    return round(number, ndigits)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "bool": bool,
    "float": float,
    "int": int,
    "len": len,
    "lower": _text_function("lower", str.lower),
    "max": max,
    "min": min,
    "round": _round,
    "str": _to_str,
    "upper": _text_function("upper", str.upper),
}
CONDITION_FUNCTIONS = frozenset(_FUNCTIONS)
"""The functions a condition may call."""


def _size(value: Any, limit: int) -> int:
    """Count a value's elements (a string counts its characters), stopping past ``limit``."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 1 + len(item)
            pending.extend(item.values())
        elif _is_sequence(item):
            total += 1
            if len(item) > limit - total:
                return limit + 1
            pending.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:  # noqa: SIM102
        if abs(base) > 1 and abs(base).bit_length() * exponent > MAX_INT_BITS:
            raise Refusal(f"the power would exceed {MAX_INT_BITS} bits")
    return base**exponent


def _left_shift(value: Any, shift: Any) -> Any:
    if isinstance(value, int) and isinstance(shift, int) and value:  # noqa: SIM102
        if shift > MAX_INT_BITS - abs(value).bit_length():
            raise Refusal(f"the shift would exceed {MAX_INT_BITS} bits")
    return value << shift


def _modulo(left: Any, right: Any) -> Any:
    # "%" on a string is printf formatting: "%999999999d" % 1 builds a gigabyte.
    if isinstance(left, str | bytes):
        raise Refusal("string formatting with % is not allowed")
    return left % right


def _normalized(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    # Recorded data may arrive frozen (tuples, read-only mappings): compare it as the
    # JSON it stands for, so ${x.items} == [1, 2] holds whether items is a list or not.
    def normalized(left: Any, right: Any) -> Any:
        if _is_container(left) or _is_container(right):
            return compare(plain_copy(left), plain_copy(right))
        return compare(left, right)

    return normalized


def _contains(needle: Any, haystack: Any) -> bool:
    if _is_container(needle):
        return plain_copy(needle) in plain_copy(haystack)
    return needle in haystack


_ORDERINGS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_EVALUATED: tuple[type[ast.AST], ...] = (
    *(ast.Name, ast.Constant, ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp),
    *(ast.Call, ast.Attribute, ast.Subscript, ast.Slice),
)


class BoundedEvaluator(SimpleEval):  # type: ignore[misc]  # simpleeval has no type hints
    """A simpleeval evaluator reduced to the whitelisted nodes, with bounded operators.

    One instance per thread (see :func:`thread_evaluator`); ``names``, ``display`` and
    ``spent`` are set for each evaluation (see :func:`evaluate_parsed`).

    Attributes:
        names: The values the expression's names stand for, constants included.
        display: ``(placeholder, text)`` pairs that turn a placeholder back into the
            ``${...}`` the author wrote, in messages; longest placeholder first.
        spent: Elements built so far in this evaluation, against :data:`MAX_TOTAL_SIZE`.
    """

    nodes: dict[type[ast.AST], Callable[[Any], Any]]

    def __init__(self) -> None:
        super().__init__(functions=dict(_FUNCTIONS), names={})
        self.display: tuple[tuple[str, str], ...] = ()
        self.spent = 0
        # simpleeval's defaults for -, /, //, >> (bounded), bitwise, unary, is and is not.
        self.operators = {
            **DEFAULT_OPERATORS,
            **{kind: _normalized(DEFAULT_OPERATORS[kind]) for kind in _ORDERINGS},
            ast.Add: self._add,
            ast.Mult: self._multiply,
            ast.Mod: _modulo,
            ast.Pow: _power,
            ast.LShift: _left_shift,
            ast.In: _contains,
            ast.NotIn: lambda needle, haystack: not _contains(needle, haystack),
        }
        # Keep only whitelisted node types, so nothing else (f-strings, assignments,
        # imports) has a handler even if the checker missed it.
        self.nodes = nodes = {kind: self.nodes[kind] for kind in _EVALUATED}
        nodes[ast.List] = lambda node: self._built([self._eval(each) for each in node.elts])
        nodes[ast.Tuple] = lambda node: self._built(tuple(map(self._eval, node.elts)))
        nodes[ast.Dict] = lambda node: self._built(
            {self._eval(k): self._eval(v) for k, v in zip(node.keys, node.values, strict=True)}
        )

    def _eval(self, node: ast.AST) -> Any:
        handler = self.nodes.get(type(node))
        if handler is None:
            raise Refusal(f"{type(node).__name__} is not allowed")
        result = handler(node)
        # The last line of defence: no function, type, method or module ever becomes a
        # value. (simpleeval's own check walks every container at every node, which
        # would cost the size of the input for each name; the whitelist makes it moot.)
        if callable(result) or isinstance(result, ModuleType):
            raise Refusal("functions, types and modules are not values")
        return result

    def _charge(self, size: int) -> None:
        if size > MAX_VALUE_SIZE:
            raise Refusal(
                f"the condition would build a value of more than {MAX_VALUE_SIZE:,} elements"
            )
        self.spent += size
        if self.spent > MAX_TOTAL_SIZE:
            raise Refusal(f"the condition builds more than {MAX_TOTAL_SIZE:,} elements")

    def _built(self, value: Any) -> Any:
        self._charge(len(value))
        return value

    def _add(self, left: Any, right: Any) -> Any:
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            self._charge(len(left) + len(right))
            if isinstance(left, list | tuple) and type(left) is not type(right):
                return [*left, *right]  # a frozen tuple plus a list literal
        return left + right

    def _multiply(self, left: Any, right: Any) -> Any:
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise Refusal(f"the product would exceed {MAX_INT_BITS} bits")
            return left * right
        count, repeated = (right, left) if isinstance(right, int) else (left, right)
        if isinstance(count, int) and count > 0 and isinstance(repeated, str | list | tuple):
            # Deep size: [[1] * 99999] * 99999 holds only 99999 references, but printing
            # or comparing it touches ten billion elements.
            self._charge(_size(repeated, MAX_VALUE_SIZE // count + 1) * count)
        return left * right

    def _eval_name(self, node: ast.Name) -> Any:
        try:
            return self.names[node.id]
        except KeyError:
            raise Refusal(f"{node.id!r} is not available for this condition") from None

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        container = self._eval(node.value)
        if node.attr.startswith("_") or not isinstance(container, Mapping):
            raise Refusal(
                f"{self._show(node.value)} is {_kind(container)}: '.{node.attr}' reads a key"
                " of an object"
            )
        if node.attr not in container:
            raise Refusal(f"no key {node.attr!r} in {self._show(node.value)}")
        return container[node.attr]

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if isinstance(container, Mapping):
            if key not in container:
                raise Refusal(f"no key {key!r} in {self._show(node.value)}")
        elif isinstance(container, str) or _is_sequence(container):
            if isinstance(key, int) and not -len(container) <= key < len(container):
                shown = self._show(node.value)
                raise Refusal(f"index {key} is out of range for {shown} (length {len(container)})")
        else:
            raise Refusal(f"{self._show(node.value)} is {_kind(container)}: it has no items")
        return container[key]

    def _show(self, node: ast.AST) -> str:
        text = ast.unparse(node)
        for placeholder, shown in self.display:
            text = text.replace(placeholder, shown)
        return text


_KINDS = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
}


def _kind(value: Any) -> str:
    if _is_sequence(value):
        return "a list"
    return _KINDS.get(type(value), f"a {type(value).__name__}")


_local = threading.local()
_creation = threading.Lock()


def thread_evaluator() -> BoundedEvaluator:
    """The calling thread's evaluator, created on its first use.

    An evaluator holds per-evaluation state, so threads never share one.
    """
    evaluator: BoundedEvaluator | None = getattr(_local, "evaluator", None)
    if evaluator is None:
        # SimpleEval.__init__ enters warnings.catch_warnings(), which swaps the process-wide
        # filter list: two threads doing so at once can leave it swapped for good.
        with _creation:
            evaluator = BoundedEvaluator()
        _local.evaluator = evaluator
    return evaluator


def evaluate_parsed(
    source: str,
    tree: ast.expr,
    names: Mapping[str, Any],
    display: tuple[tuple[str, str], ...],
) -> Any:
    """Evaluate a checked expression tree on the calling thread's evaluator.

    Args:
        source: The text ``tree`` was parsed from (placeholders in place of references).
        tree: The parsed expression, as accepted by the checker.
        names: Values for every name in it, placeholders and constants included.
        display: ``(placeholder, ${...} text)`` pairs for messages, longest placeholder
            first.

    Returns:
        The expression's value, as computed (frozen data stays frozen).

    Raises:
        Refusal: A limit was exceeded, or the data does not fit (a missing key, a member
            of a non-object...); the message says which.
        Exception: Whatever Python raised (a ``TypeError``, a ``ZeroDivisionError``...).
    """
    evaluator = thread_evaluator()
    evaluator.names, evaluator.display, evaluator.spent = names, display, 0
    try:
        return evaluator.eval(source, previously_parsed=tree)
    finally:
        evaluator.names = {}  # do not keep execution data alive between evaluations
