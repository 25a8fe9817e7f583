"""Branch conditions: small, safe expressions evaluated with ``simpleeval``.

A condition such as ``output.total > 100 and status == "COMPLETED"`` decides whether a
connection is taken. No user text ever reaches ``eval``, ``exec`` or ``compile``: it is
parsed with :func:`ast.parse`, checked against an explicit whitelist, and evaluated by a
locked-down ``simpleeval`` evaluator whose operators are all bounded.

A condition may use:

- the names ``input``, ``output`` and ``result`` (both: the source step's output),
  ``status``, ``error``, ``steps`` (step id to ``{"output", "status", "error"}``) and
  ``true``/``false``/``null`` besides ``True``/``False``/``None``; ``steps`` is indexed
  by a literal step id (``steps.fetch``, ``steps["fetch"]``), so that the definition
  checks can tell which steps a condition reads;
- ``${...}`` references, bound as values (never pasted into the text);
- literals (numbers, strings, lists, tuples, dicts; not sets), members ``input.a`` (data
  keys only, never methods or attributes), subscripts ``x["a"]``, ``x[0]`` and slices;
- arithmetic, comparisons (with ``in``, ``not in``, ``is``), ``and``/``or``/``not`` and
  ``a if c else b``;
- the functions in :data:`CONDITION_FUNCTIONS`, positional arguments only: ``len``,
  ``int``, ``float``, ``bool``, ``abs``, ``min``, ``max``, ``round``, ``lower``, ``upper``
  and ``str`` (of a scalar only; Python's text, so ``str(true)`` is ``"True"``).

Data compares as the JSON it stands for: a recorded tuple equals a list literal, a
read-only mapping equals a dict. Every limit (the ``MAX_*`` names, re-exported here) is
checked before the work it bounds is done.

This module is the load-time half: it parses a condition, checks it against the
whitelist and lists what it reads. The run-time half, the bounded evaluator with its
limits and functions, is :mod:`flowledger.domain.condition_evaluator`.
"""

from __future__ import annotations

import ast
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flowledger.domain.condition_evaluator import (
    CONDITION_FUNCTIONS,
    CONSTANTS,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_INT_BITS,
    MAX_INT_LITERAL,
    MAX_NODES,
    MAX_ROUND_DIGITS,
    MAX_TOTAL_SIZE,
    MAX_VALUE_SIZE,
    Refusal,
    evaluate_parsed,
)
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

__all__ = [
    "CONDITION_FUNCTIONS",
    "CONDITION_NAMES",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT_BITS",
    "MAX_INT_LITERAL",
    "MAX_NODES",
    "MAX_ROUND_DIGITS",
    "MAX_TOTAL_SIZE",
    "MAX_VALUE_SIZE",
    "SOURCE_NAMES",
    "Condition",
    "compile_condition",
    "evaluate_condition",
]

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
    """Walks a parsed condition, lists every construct outside the whitelist and what it reads.

    After :meth:`run`, ``names`` holds the bare names used and ``step_ids`` the step ids
    read through ``steps``.
    """

    def __init__(self, placeholders: Mapping[str, str]) -> None:
        self.placeholders = placeholders
        self.problems: list[str] = []
        self.names: set[str] = set()
        self.step_ids: set[str] = set()
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
        if isinstance(node, ast.Subscript) and _is_steps(node.value):
            self._step_index(node.slice)
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
        elif name in CONDITION_FUNCTIONS:
            self._report(f"{name} is a function: call it, as in {name}(...)")
        elif name in CONDITION_NAMES:
            self.names.add(name)
        elif name not in CONSTANTS:
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
        elif _is_steps(node.value):
            self.step_ids.add(node.attr)

    def _step_index(self, index: ast.expr) -> None:
        # Only a literal says which step is read; the load-time checks need to know.
        if isinstance(index, ast.Constant) and isinstance(index.value, str):
            self.step_ids.add(index.value)
        else:
            self._report(
                "steps must be indexed by a literal step id, as in steps.fetch or steps['fetch']"
            )

    def _call(self, node: ast.Call) -> list[ast.AST]:
        function = node.func
        if not (isinstance(function, ast.Name) and function.id in CONDITION_FUNCTIONS):
            allowed = ", ".join(sorted(CONDITION_FUNCTIONS))
            self._report(f"only these functions can be called: {allowed}")
        if node.keywords:
            self._report("keyword arguments are not allowed")
        # A method call's receiver is inspected too, to name its "_" attributes.
        return list(node.args) if isinstance(function, ast.Name) else [function, *node.args]


def _is_steps(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "steps"


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
    step_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Condition:
    """A condition that compiled without problems.

    Attributes:
        expression: The condition's text, as written.
        references: The distinct ``${...}`` references it contains, in order.
        names: The bare names it uses (a subset of :data:`CONDITION_NAMES`).
        step_ids: The step ids it reads through ``steps`` (``steps.fetch``,
            ``steps["fetch"]``, ``steps.fetch.output.x``...), whether or not such steps
            exist: the definition checks decide that. Default: none.
    """

    expression: str
    references: tuple[Reference, ...]
    names: frozenset[str]
    step_ids: frozenset[str] = frozenset()


def compile_condition(expression: str) -> tuple[Condition | None, list[str]]:
    """Parse and check a condition, as when a definition loads.

    Args:
        expression: The condition's text. Callers treat an absent or empty condition as
            always true without compiling it; here an empty one is a problem.

    Returns:
        ``(condition, [])``, or ``(None, problems)`` listing every syntax error, unknown
        name, forbidden construct (``steps`` indexed by anything but a literal string
        included), malformed reference and exceeded limit found.
    """
    compiled = _compiled(expression)
    if compiled.problems:
        return None, list(compiled.problems)
    return Condition(expression, compiled.references, compiled.names, compiled.step_ids), []


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
        step_ids=frozenset(checker.step_ids),
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
    bound: dict[str, Any] = dict(CONSTANTS)
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
    try:
        value = evaluate_parsed(compiled.source, compiled.tree, bound, compiled.display)
        truth, plain = bool(value), plain_copy(value)
    except Exception as error:  # every failure must surface, never as "branch not taken"
        reason = str(error) if isinstance(error, Refusal) else f"{type(error).__name__}: {error}"
        raise ConditionError(expression, reason, source, target) from error
    return truth, plain
