"""Parameter references: ``${input.a.b}`` and ``${step_id.output.items[0].name}``.

A reference names a value that exists only at run time: part of the execution input, or
the output, status or error of an upstream step. Definitions are scanned for references
when they load (:func:`scan_references`), so malformed ones are reported before anything
runs; the engine resolves them just before each step starts (:func:`resolve_references`).

Grammar, inside ``${`` and ``}`` and with no white space::

    reference := root segment*
    root      := [A-Za-z_][A-Za-z0-9_-]*          "input" or a step id
    segment   := "." [A-Za-z_][A-Za-z0-9_-]*      a member of an object
               | "[" [0-9]+ "]"                   an index into a list

A reference to a step continues with ``.output``, ``.status`` or ``.error``. ``$${`` is a
literal ``${`` and never starts a reference; escapes are read left to right, so
``$$${x}`` is ``$`` and the literal ``${x}``. Keys that do not fit the grammar (spaces,
dots, leading digits) cannot be referenced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, TypeAlias

from flowledger.domain.canonical import canonical_json, thaw
from flowledger.domain.jsonpath import child
from flowledger.errors import MissingInputError

STEP_FIELDS = frozenset({"output", "status", "error"})
"""What may follow a step id in a reference."""

_NAME = "[A-Za-z_][A-Za-z0-9_-]*"
_ROOT = re.compile(_NAME)
_SEGMENT = re.compile(rf"\.({_NAME})|\[([0-9]+)\]")
# One scan finds, left to right: the escape "$${", a closed "${...}" (the first "}" ends
# it) and, failing that, an unclosed "${" (no "}" anywhere after it).
_MARKER = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ESCAPE = "$${"

_SCALARS = frozenset({str, int, float, bool, type(None)})

# Templates are parsed once per distinct string. Long strings are not cached: the cache
# keeps its keys alive, and a few large parameters could otherwise pin megabytes.
_CACHED_TEMPLATE_LENGTH = 1024


@dataclass(frozen=True)
class Reference:
    """One parsed ``${...}`` reference.

    Attributes:
        expression: The text between ``${`` and ``}``, e.g. ``fetch.output.items[0].name``.
        root: ``"input"`` or a step id.
        path: The segments after the root, e.g. ``("output", "items", 0, "name")``.
    """

    expression: str
    root: str
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class MalformedReference:
    """A ``${...}`` that does not follow the grammar, as found in a template.

    Attributes:
        text: The offending source text, e.g. ``"${ input }"``.
        message: What is wrong with it.
    """

    text: str
    message: str


TemplatePart: TypeAlias = str | Reference | MalformedReference
"""A piece of a parsed string: literal text (escapes already undone) or a reference."""


@dataclass(frozen=True)
class ReferenceScan:
    """Every reference found in a value, and every malformed one.

    Attributes:
        references: ``(relative JSON path of the string holding it, reference)`` pairs,
            in document order. The path is ``""`` for the value itself, then ``.key``,
            ``[0]`` or ``['odd key']`` steps.
        problems: ``(relative JSON path, message)`` for each malformed reference.
    """

    references: tuple[tuple[str, Reference], ...]
    problems: tuple[tuple[str, str], ...]


@lru_cache(maxsize=4096)
def parse_reference(expression: str) -> Reference:
    """Parse the text between ``${`` and ``}``.

    Args:
        expression: For example ``"input.order.id"`` or ``"fetch.output.items[0]"``.

    Returns:
        The parsed reference.

    Raises:
        ValueError: The expression does not follow the grammar; the message says why.
    """
    if not expression:
        raise ValueError("empty reference '${}'")
    if "{" in expression or "$" in expression:
        raise ValueError("'$' and '{' cannot appear inside a reference (no nesting)")
    if any(char.isspace() for char in expression):
        raise ValueError("white space is not allowed inside '${...}'")
    root_match = _ROOT.match(expression)
    if root_match is None:
        raise ValueError(
            "a reference starts with 'input' or a step id (letters, digits, '_' and '-',"
            f" not starting with a digit or '-'), got {expression!r}"
        )
    path: list[str | int] = []
    position = root_match.end()
    while position < len(expression):
        segment = _SEGMENT.match(expression, position)
        if segment is None:
            raise ValueError(_segment_problem(expression, position))
        name, index = segment.groups()
        path.append(name if name is not None else int(index))
        position = segment.end()
    root = root_match.group()
    if root != "input":
        _check_step_path(root, path)
    return Reference(expression=expression, root=root, path=tuple(path))


def _segment_problem(expression: str, position: int) -> str:
    rest = expression[position:]
    where = f"unexpected {rest!r} after {expression[:position]!r}"
    if rest.startswith(".") and rest[1:2].isdigit():
        return f"{where}: member names cannot start with a digit; write [N] for a list index"
    if rest.startswith("["):
        return f"{where}: an index is a non-negative integer in brackets, like [0]"
    return f"{where}: expected '.name' or '[index]'"


def _check_step_path(root: str, path: list[str | int]) -> None:
    if not path or path[0] not in STEP_FIELDS:
        raise ValueError(
            f"a reference to step {root!r} must continue with .output, .status or .error"
        )
    if path[0] == "status" and len(path) > 1:
        raise ValueError("a step's status is a string: nothing can follow '.status'")


def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """Split a string into literal text and references.

    Adjacent literal text is merged and ``$${`` is already turned into ``${``. Results
    are cached per string, so call this freely.

    Args:
        text: Any string, with or without references.

    Returns:
        The parts in order; an empty tuple for an empty string.
    """
    if len(text) <= _CACHED_TEMPLATE_LENGTH:
        return _parse_template_cached(text)
    return _parse_template(text)


def _parse_template(text: str) -> tuple[TemplatePart, ...]:
    parts: list[TemplatePart] = []
    literal: list[str] = []
    position = 0
    for marker in _MARKER.finditer(text):
        literal.append(text[position : marker.start()])
        position = marker.end()
        found = marker.group()
        if found == _ESCAPE:
            literal.append("${")
            continue
        if any(literal):
            parts.append("".join(literal))
        literal = []
        if marker.group(1) is None:
            # No "}" anywhere after it: the rest of the text is the problem. Stop here, or
            # every later "${" would be reported again, each after a scan to the end.
            rest = text[marker.start() :]
            parts.append(MalformedReference(rest, "unclosed '${' (no '}' follows)"))
            return tuple(parts)
        try:
            parts.append(parse_reference(marker.group(1)))
        except ValueError as problem:
            parts.append(MalformedReference(found, str(problem)))
    literal.append(text[position:])
    if any(literal):
        parts.append("".join(literal))
    return tuple(parts)


_parse_template_cached = lru_cache(maxsize=4096)(_parse_template)


def scan_references(value: Any) -> ReferenceScan:
    """Find every reference in a JSON-like value (strings, mappings, sequences).

    Mapping keys are names, not templates: they are not scanned.

    Args:
        value: A parameter value, a condition string, a whole definition section...

    Returns:
        The references and problems found, with paths relative to ``value``.
    """
    references: list[tuple[str, Reference]] = []
    problems: list[tuple[str, str]] = []
    _scan(value, "", references, problems)
    return ReferenceScan(references=tuple(references), problems=tuple(problems))


def _scan(
    value: Any,
    path: str,
    references: list[tuple[str, Reference]],
    problems: list[tuple[str, str]],
) -> None:
    if isinstance(value, str):
        if "${" not in value:
            return
        for part in parse_template(value):
            if isinstance(part, Reference):
                references.append((path, part))
            elif isinstance(part, MalformedReference):
                problems.append((path, f"malformed reference {part.text!r}: {part.message}"))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _scan(item, child(path, str(key)), references, problems)
    elif _is_sequence(value):
        for index, item in enumerate(value):
            _scan(item, child(path, index), references, problems)


def resolve_references(value: Any, context: Mapping[str, Any]) -> Any:
    """Replace every reference in a value by what it names.

    A string that is exactly one reference becomes the referenced value itself, with its
    type (as a plain, independent copy: the action may mutate it without touching the
    recorded state). References inside longer strings are interpolated: strings as they
    are, anything else as canonical JSON (``true``, ``null``, ``{"a":1}``; keys sorted so
    the text does not depend on key order). Mappings and sequences are resolved
    recursively into plain dicts and lists; other values are returned unchanged.
    Substituted text is never scanned again.

    Args:
        value: The template, typically a step's ``parameters``.
        context: Root to value: ``{"input": {...}, "<step id>": {"output": ...,
            "status": "COMPLETED", "error": None}}``.

    Returns:
        The resolved value.

    Raises:
        MissingInputError: A reference names a value that is not there
            (``missing_var`` is its expression). JSON null is a value, not missing.
        ValueError: A string holds a malformed reference (definitions are validated
            when they load, so this means an unvalidated template), or a value to
            interpolate is not JSON (NaN, infinity).
        TypeError: A value to interpolate is not JSON-compatible at all.
    """
    kind = type(value)
    if kind is str:
        return _resolve_string(value, context) if "${" in value else value
    # Exact types first: this runs for every step, and abstract-class checks are slow.
    if kind in _SCALARS:
        return value
    if kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        return {key: resolve_references(item, context) for key, item in value.items()}
    if kind is list or kind is tuple or _is_sequence(value):
        return [resolve_references(item, context) for item in value]
    if isinstance(value, str):  # a str subclass, e.g. a StrEnum member
        return _resolve_string(value, context) if "${" in value else value
    return value


def _resolve_string(text: str, context: Mapping[str, Any]) -> Any:
    parts = parse_template(text)
    if len(parts) == 1 and isinstance(parts[0], Reference):
        return plain_copy(lookup_reference(parts[0], context))
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, Reference):
            found = lookup_reference(part, context)
            pieces.append(found if isinstance(found, str) else canonical_json(found))
        else:
            raise ValueError(f"malformed reference {part.text!r}: {part.message}")
    return "".join(pieces)


def lookup_reference(reference: Reference, context: Mapping[str, Any]) -> Any:
    """Return the value a reference names, as stored in ``context`` (not copied).

    Args:
        reference: A parsed reference.
        context: As for :func:`resolve_references`.

    Returns:
        The value; do not mutate it.

    Raises:
        MissingInputError: The root, a key or an index is missing, or a segment indexes
            into something that is not an object or list.
    """
    if reference.root not in context:
        detail = "the execution has no input" if reference.root == "input" else "no result yet"
        raise MissingInputError(reference.expression, f"{reference.root}: {detail}")
    current = context[reference.root]
    for depth, segment in enumerate(reference.path):
        if isinstance(segment, str) and isinstance(current, Mapping):
            if segment not in current:
                where = _describe(reference, depth)
                raise MissingInputError(reference.expression, f"no key {segment!r} in {where}")
            current = current[segment]
        elif isinstance(segment, int) and _is_sequence(current):
            if segment >= len(current):
                where = _describe(reference, depth)
                detail = f"index {segment} is out of range for {where} (length {len(current)})"
                raise MissingInputError(reference.expression, detail)
            current = current[segment]
        else:
            wanted = "an object" if isinstance(segment, str) else "a list"
            found = _kind(current)
            detail = f"{_describe(reference, depth)} is {found}, not {wanted}"
            raise MissingInputError(reference.expression, detail)
    return current


plain_copy = thaw
"""A deep, plain copy of a JSON-like value (see :func:`flowledger.domain.canonical.thaw`)."""


def _describe(reference: Reference, depth: int) -> str:
    text = reference.root
    for segment in reference.path[:depth]:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return text


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if _is_sequence(value):
        return "a list"
    names = {type(None): "null", bool: "a boolean", str: "a string", int: "a number"}
    return names.get(type(value), "a number" if isinstance(value, float) else "a value")


def _is_sequence(value: Any) -> bool:
    # Text and bytes are sequences to Python but scalars to JSON.
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)
