"""Branch conditions: small, safe expressions evaluated with ``simpleeval``.

A condition such as ``output.total > 100 and status == "COMPLETED"`` decides whether a
connection is taken. No user text ever reaches ``eval``, ``exec`` or ``compile``: it is
parsed with :func:`ast.parse`, checked against an explicit whitelist, and evaluated by a
locked-down ``simpleeval`` evaluator whose operators are all bounded.

A condition may use:

- the names ``input``, ``output`` and ``result`` (both: the source step's output),
  ``status``, ``error``, ``steps`` (step id to ``{"output", "status", "error"}``) and
  ``true``/``false``/``null`` besides ``True``/``False``/``None``;
- ``${...}`` references, bound as values (never pasted into the text);
- literals (numbers, strings, lists, tuples, dicts; not sets), members ``input.a`` (data
  keys only, never methods or attributes), subscripts ``x["a"]``, ``x[0]`` and slices;
- arithmetic, comparisons (with ``in``, ``not in``, ``is``), ``and``/``or``/``not`` and
  ``a if c else b``;
- the functions in :data:`CONDITION_FUNCTIONS`, positional arguments only: ``len``,
  ``int``, ``float``, ``bool``, ``abs``, ``min``, ``max``, ``round``, ``lower``, ``upper``
  and ``str`` (of a scalar only; Python's text, so ``str(true)`` is ``"True"``).

Data compares as the JSON it stands for: a recorded tuple equals a list literal, a
read-only mapping equals a dict. Every limit (``MAX_*`` below) is checked before the
work it bounds is done.
"""

from __future__ import annotations

import ast
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from simpleeval import DEFAULT_OPERATORS, SimpleEval

from flowledger.domain.references import (
    MalformedReference,
    Reference,
    lookup_reference,
    parse_template,
    plain_copy,
)
from flowledger.errors import ConditionError, MissingInputError

CONDITION_NAMES = frozenset({"input", "output", "result", "status", "error", "steps"})
"""The bare names a condition may use."""
SOURCE_NAMES = frozenset({"output", "result", "status", "error"})
"""Names that only make sense where the condition has a source step (a connection)."""

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

_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}


class _Refusal(Exception):
    """An evaluation refused or failed for a reason worth telling the author as is."""


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _is_container(value: Any) -> bool:
    return isinstance(value, Mapping) or _is_sequence(value)


def _to_str(value: Any) -> str:
    # Only scalars: the text of a nested structure could be far larger than its size.
    if value is None or isinstance(value, str | int | float):
        return str(value)
    raise _Refusal("str() converts a single string, number, boolean or null")


def _text_function(name: str, method: Callable[[str], str]) -> Callable[[Any], str]:
    def function(text: Any) -> str:
        if not isinstance(text, str):
            raise _Refusal(f"{name}() expects a string")
        return method(text)

    function.__name__ = function.__qualname__ = name  # for Python's own argument errors
    return function


def _round(number: Any, ndigits: Any = None) -> Any:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS):
        raise _Refusal(f"round() takes at most {MAX_ROUND_DIGITS} digits")
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
            raise _Refusal(f"the power would exceed {MAX_INT_BITS} bits")
    return base**exponent


def _left_shift(value: Any, shift: Any) -> Any:
    if isinstance(value, int) and isinstance(shift, int) and value:  # noqa: SIM102
        if shift > MAX_INT_BITS - abs(value).bit_length():
            raise _Refusal(f"the shift would exceed {MAX_INT_BITS} bits")
    return value << shift


def _modulo(left: Any, right: Any) -> Any:
    # "%" on a string is printf formatting: "%999999999d" % 1 builds a gigabyte.
    if isinstance(left, str | bytes):
        raise _Refusal("string formatting with % is not allowed")
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


class _Evaluator(SimpleEval):  # type: ignore[misc]  # simpleeval has no type hints
    """A simpleeval evaluator reduced to the whitelisted nodes, with bounded operators.

    One instance per thread (see :func:`_evaluator`); ``names``, ``display`` and
    ``spent`` are set for each evaluation.
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
            raise _Refusal(f"{type(node).__name__} is not allowed")
        result = handler(node)
        # The last line of defence: no function, type, method or module ever becomes a
        # value. (simpleeval's own check walks every container at every node, which
        # would cost the size of the input for each name; the whitelist makes it moot.)
        if callable(result) or isinstance(result, ModuleType):
            raise _Refusal("functions, types and modules are not values")
        return result

    def _charge(self, size: int) -> None:
        if size > MAX_VALUE_SIZE:
            raise _Refusal(
                f"the condition would build a value of more than {MAX_VALUE_SIZE:,} elements"
            )
        self.spent += size
        if self.spent > MAX_TOTAL_SIZE:
            raise _Refusal(f"the condition builds more than {MAX_TOTAL_SIZE:,} elements")

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
                raise _Refusal(f"the product would exceed {MAX_INT_BITS} bits")
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
            raise _Refusal(f"{node.id!r} is not available for this condition") from None

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        container = self._eval(node.value)
        if node.attr.startswith("_") or not isinstance(container, Mapping):
            raise _Refusal(
                f"{self._show(node.value)} is {_kind(container)}: '.{node.attr}' reads a key"
                " of an object"
            )
        if node.attr not in container:
            raise _Refusal(f"no key {node.attr!r} in {self._show(node.value)}")
        return container[node.attr]

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if isinstance(container, Mapping):
            if key not in container:
                raise _Refusal(f"no key {key!r} in {self._show(node.value)}")
        elif isinstance(container, str) or _is_sequence(container):
            if isinstance(key, int) and not -len(container) <= key < len(container):
                shown = self._show(node.value)
                raise _Refusal(f"index {key} is out of range for {shown} (length {len(container)})")
        else:
            raise _Refusal(f"{self._show(node.value)} is {_kind(container)}: it has no items")
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


def _evaluator() -> _Evaluator:
    evaluator: _Evaluator | None = getattr(_local, "evaluator", None)
    if evaluator is None:
        # SimpleEval.__init__ enters warnings.catch_warnings(), which swaps the process-wide
        # filter list: two threads doing so at once can leave it swapped for good.
        with _creation:
            evaluator = _Evaluator()
        _local.evaluator = evaluator
    return evaluator


_ARITHMETIC: tuple[type[ast.operator], ...] = (  # not ast.MatMult (@)
    *(ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow),
    *(ast.LShift, ast.RShift, ast.BitOr, ast.BitXor, ast.BitAnd),
)
_REFUSED = {ast.Lambda: "lambda functions", ast.JoinedStr: "f-strings", ast.Set: "set literals"}
_REFUSED |= {ast.NamedExpr: "assignment expressions (:=)", ast.Starred: "* unpackings"}
_REFUSED |= dict.fromkeys(
    (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions"
)
_PLAIN_CHILDREN: tuple[type[ast.AST], ...] = (
    *(ast.UnaryOp, ast.Compare, ast.Dict, ast.BoolOp, ast.IfExp, ast.Subscript),
    *(ast.Slice, ast.List, ast.Tuple),
)


class _Checker:
    """Walks a parsed condition and lists every construct outside the whitelist."""

    def __init__(self, placeholders: Mapping[str, str]) -> None:
        self.placeholders = placeholders
        self.problems: list[str] = []
        self.names: set[str] = set()
        self.seen: set[str] = set()

    def run(self, root: ast.expr) -> None:
        # Iterative, so a deep tree is measured and refused, never a RecursionError.
        pending: list[tuple[ast.AST, int]] = [(root, 1)]
        count = 0
        while pending:
            node, depth = pending.pop()
            count += 1
            if count > MAX_NODES:
                self._report(f"the condition is too complex (more than {MAX_NODES} parts)")
                return
            if depth > MAX_DEPTH:
                self._report(f"the condition is nested too deeply (more than {MAX_DEPTH} levels)")
                continue
            children = self._inspect(node)
            pending.extend((each, depth + 1) for each in reversed(children))
        for placeholder, shown in self.placeholders.items():
            if placeholder not in self.seen:
                self._report(f"{shown} must be used as a value (not inside a comment)")

    def _report(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def _inspect(self, node: ast.AST) -> list[ast.AST]:  # noqa: PLR0911 - one case per node type
        if isinstance(node, ast.Name):
            self._name(node.id)
            return []
        if isinstance(node, ast.Constant):
            self._constant(node.value)
            return []
        if isinstance(node, ast.Attribute):
            self._attribute(node)
            return [node.value]
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _ARITHMETIC):
                self._report(f"the {type(node.op).__name__} operator is not allowed")
            return [node.left, node.right]
        if isinstance(node, ast.Dict) and None in node.keys:
            self._report("unpacking with ** is not allowed")
        if isinstance(node, _PLAIN_CHILDREN):
            return [each for each in ast.iter_child_nodes(node) if isinstance(each, ast.expr)]
        what = _REFUSED.get(type(node), f"{type(node).__name__} expressions")
        self._report(f"{what} are not allowed")
        return []

    def _name(self, name: str) -> None:
        if name in self.placeholders:
            self.seen.add(name)
        elif name.startswith("_"):
            self._report(f"names starting with '_' are not allowed ({name})")
        elif name in _FUNCTIONS:
            self._report(f"{name} is a function: call it, as in {name}(...)")
        elif name in CONDITION_NAMES:
            self.names.add(name)
        elif name not in _CONSTANTS:
            known = ", ".join(sorted(CONDITION_NAMES))
            self._report(f"unknown name {name!r} (a condition can use {known}, true, false, null)")

    def _constant(self, value: object) -> None:
        if isinstance(value, str):
            for placeholder, shown in self.placeholders.items():
                if f" {placeholder} " in value:
                    self.seen.add(placeholder)
                    self._report(
                        f"{shown} is inside a string literal, where it is not resolved: use it"
                        " as a value, or write $${ for a literal '${'"
                    )
        elif isinstance(value, int) and abs(value) > MAX_INT_LITERAL:
            self._report(f"integer literals are limited to {MAX_INT_LITERAL} in absolute value")
        elif not (value is None or isinstance(value, int | float)):
            self._report(f"{type(value).__name__} literals are not allowed")

    def _attribute(self, node: ast.Attribute) -> None:
        if node.attr in self.placeholders:
            self.seen.add(node.attr)
            shown = self.placeholders[node.attr]
            self._report(f"{shown} cannot be a member name: write x[{shown}] instead")
        elif node.attr.startswith("_"):
            self._report(f"names starting with '_' are not allowed (.{node.attr})")
        elif isinstance(node.value, ast.Constant):
            self._report(f"literals have no members or methods (.{node.attr})")

    def _call(self, node: ast.Call) -> list[ast.AST]:
        function = node.func
        if not (isinstance(function, ast.Name) and function.id in _FUNCTIONS):
            allowed = ", ".join(sorted(_FUNCTIONS))
            self._report(f"only these functions can be called: {allowed}")
        if node.keywords:
            self._report("keyword arguments are not allowed")
        # A method call's receiver is inspected too, to name its "_" attributes.
        return list(node.args) if isinstance(function, ast.Name) else [function, *node.args]


@dataclass(frozen=True)
class _Compiled:
    """A condition as parsed and checked, cached per expression text."""

    problems: tuple[str, ...]
    source: str = ""
    tree: ast.expr | None = None
    bindings: tuple[tuple[str, Reference], ...] = ()
    display: tuple[tuple[str, str], ...] = ()
    references: tuple[Reference, ...] = ()
    names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Condition:
    """A condition that compiled without problems.

    Attributes:
        expression: The condition's text, as written.
        references: The distinct ``${...}`` references it contains, in order.
        names: The bare names it uses (a subset of :data:`CONDITION_NAMES`).
    """

    expression: str
    references: tuple[Reference, ...]
    names: frozenset[str]


def compile_condition(expression: str) -> tuple[Condition | None, list[str]]:
    """Parse and check a condition, as when a definition loads.

    Args:
        expression: The condition's text. Callers treat an absent or empty condition as
            always true without compiling it; here an empty one is a problem.

    Returns:
        ``(condition, [])``, or ``(None, problems)`` listing every syntax error, unknown
        name, forbidden construct, malformed reference and exceeded limit found.
    """
    compiled = _compiled(expression)
    if compiled.problems:
        return None, list(compiled.problems)
    return Condition(expression, compiled.references, compiled.names), []


def _compiled(expression: str) -> _Compiled:
    if not isinstance(expression, str):
        return _Compiled(problems=("a condition must be a string",))
    if not expression.strip():
        return _Compiled(problems=("the condition is empty",))
    if len(expression) > MAX_EXPRESSION_LENGTH:
        limit = f"{len(expression):,} characters, at most {MAX_EXPRESSION_LENGTH:,}"
        return _Compiled(problems=(f"the condition is too long ({limit})",))
    return _compile(expression)


def _placeholder_prefix(expression: str) -> str:
    # A prefix that occurs nowhere in the text (nor in its NFKC form, which Python applies
    # to identifiers), so no name the author wrote can ever be taken for a placeholder.
    normalized = unicodedata.normalize("NFKC", expression)
    prefix = "_ref"
    while prefix in expression or prefix in normalized:
        prefix += "_"
    return prefix


@lru_cache(maxsize=1024)
def _compile(expression: str) -> _Compiled:
    prefix = _placeholder_prefix(expression)
    pieces: list[str] = []
    display: dict[str, str] = {}
    bindings: list[tuple[str, Reference]] = []
    problems: list[str] = []
    for part in parse_template(expression):
        if isinstance(part, str):
            pieces.append(part)
            continue
        placeholder = f"{prefix}{len(display)}"
        # Spaces keep ${a}${b} or x${a} from fusing into one name.
        pieces.append(f" {placeholder} ")
        if isinstance(part, MalformedReference):
            display[placeholder] = part.text
            problems.append(f"malformed reference {part.text!r}: {part.message}")
        else:
            display[placeholder] = f"${{{part.expression}}}"
            bindings.append((placeholder, part))
    # Leading white space would be an "unexpected indent" to the parser.
    source = "".join(pieces).strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        indent = len(expression) - len(expression.lstrip())
        # Columns shift where references were replaced: give them only where none were.
        known = bool(error.offset) and error.lineno == 1 and not display
        where = f" (column {(error.offset or 0) + indent})" if known else ""
        return _Compiled(problems=(*problems, f"syntax error: {error.msg}{where}"))
    except (ValueError, RecursionError, MemoryError):
        return _Compiled(problems=(*problems, "the condition is too complex to parse"))
    checker = _Checker(display)
    checker.run(tree.body)
    return _Compiled(
        problems=(*problems, *checker.problems),
        source=source,
        tree=tree.body,
        bindings=tuple(bindings),
        display=tuple(sorted(display.items(), key=lambda item: -len(item[0]))),
        references=tuple(dict.fromkeys(reference for _, reference in bindings)),
        names=frozenset(checker.names),
    )


def evaluate_condition(
    condition: Condition,
    names: Mapping[str, Any],
    references: Mapping[str, Any],
    *,
    source: str | None,
    target: str,
) -> tuple[bool, Any]:
    """Evaluate a compiled condition.

    Args:
        condition: From :func:`compile_condition` (it is checked again all the same).
        names: Values for ``input``, ``output``, ``status``, ``error`` and ``steps``;
            ``result`` defaults to ``output``. Other keys are ignored.
        references: The context ``${...}`` references resolve in, as for
            :func:`flowledger.domain.references.resolve_references`.
        source: The step the connection leaves, or None for a step's own guard.
        target: The step the condition guards.

    Returns:
        ``(truthiness, value)``: ``bool(value)`` and the value itself, as plain data.

    Raises:
        ConditionError: Anything went wrong: a missing reference (the reason names it), a
            missing key, incompatible types, division by zero, an exceeded limit... A
            failed condition is never taken for a false one.
    """
    expression = condition.expression
    compiled = _compiled(expression)
    if compiled.tree is None or compiled.problems:
        reason = "invalid condition: " + "; ".join(compiled.problems)
        raise ConditionError(expression, reason, source, target)
    bound: dict[str, Any] = dict(_CONSTANTS)
    bound.update((name, names[name]) for name in CONDITION_NAMES if name in names)
    if "result" not in bound and "output" in bound:
        bound["result"] = bound["output"]
    try:
        bound.update(
            (placeholder, lookup_reference(reference, references))
            for placeholder, reference in compiled.bindings
        )
    except MissingInputError as error:
        raise ConditionError(expression, str(error), source, target) from error
    evaluator = _evaluator()
    evaluator.names, evaluator.display, evaluator.spent = bound, compiled.display, 0
    try:
        value = evaluator.eval(compiled.source, previously_parsed=compiled.tree)
        truth, plain = bool(value), plain_copy(value)
    except Exception as error:  # every failure must surface, never as "branch not taken"
        reason = str(error) if isinstance(error, _Refusal) else f"{type(error).__name__}: {error}"
        raise ConditionError(expression, reason, source, target) from error
    finally:
        evaluator.names = {}  # do not keep execution data alive between evaluations
    return truth, plain
