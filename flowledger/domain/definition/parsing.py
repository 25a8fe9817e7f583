"""From a source (mapping, JSON or YAML text, or a file path) to plain, checked JSON data.

How a ``str`` source is read:

1. Text that contains a line break, or whose first non-blank character is ``{`` or
   ``[``, is definition *content*. Content starting with ``{``/``[`` is parsed as JSON,
   falling back to YAML (flow style such as ``{id: x}`` is YAML, not JSON); anything
   else is parsed as YAML.
2. Otherwise a string ending in ``.json``, ``.yaml`` or ``.yml`` is a *path*; a missing
   file is a problem ("file not found"), never a YAML string scalar.
3. Otherwise an existing file (or directory) is a path; its extension must still be
   one of those.
4. Anything left is one line of YAML, such as ``{id: x, steps: [...]}``; a scalar
   (``"flow"``, a mistyped path) is refused as neither a definition nor a file.

``os.PathLike`` values are always paths. ``bytes`` are refused: the encoding would be
a guess. Every failure is a :class:`~flowledger.errors.DefinitionError`.

The data is then copied into plain ``dict``/``list`` values (so read-only and other
``Mapping`` types are accepted), refusing what JSON cannot hold, and checked against
``definition.schema.json``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from flowledger.domain import jsonpath
from flowledger.errors import DefinitionError, DefinitionProblem

MAX_DEPTH = 64
"""Deepest nesting accepted; deeper data (or a self-referencing YAML anchor) is refused
before any recursive code can run out of stack."""

MAX_VALUES = 1_000_000
"""Most values (of any kind) accepted in one definition; stops YAML alias bombs."""

_EXTENSIONS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
_JSON_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _load_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("definition.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


def _inline_refs(schema: Any, definitions: Mapping[str, Any]) -> Any:
    """Replace each local ``{"$ref": "#/$defs/x"}`` by a copy of its target.

    Resolving ``$ref`` through ``referencing`` costs more than the validation itself
    (two thirds of a 1,000-step load); the definition schema has no recursion, so an
    inlined copy validates the same documents, faster.
    """
    if isinstance(schema, dict):
        reference = schema.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            return _inline_refs(definitions[reference.removeprefix("#/$defs/")], definitions)
        return {key: _inline_refs(value, definitions) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline_refs(item, definitions) for item in schema]
    return schema


DEFINITION_SCHEMA: dict[str, Any] = _load_schema()
"""The definition format's JSON Schema, as shipped in ``definition.schema.json``."""

# Built once: constructing a validator per load would dominate small loads.
_VALIDATOR = Draft202012Validator(
    {
        key: value
        for key, value in _inline_refs(DEFINITION_SCHEMA, DEFINITION_SCHEMA["$defs"]).items()
        if key != "$defs"
    }
)


def _fail(message: str, path: str = jsonpath.ROOT) -> DefinitionError:
    return DefinitionError([DefinitionProblem(path, message)])


def read_source(source: object) -> Any:
    """Read a definition source into Python data (not yet checked).

    Args:
        source: A mapping, JSON or YAML text, a path string or an ``os.PathLike``.

    Returns:
        Whatever the source holds: for a mapping, the mapping itself.

    Raises:
        DefinitionError: The source is of an unsupported type, names a file that
            cannot be read, or is not well-formed JSON/YAML.
    """
    if isinstance(source, Mapping):
        return source
    if isinstance(source, os.PathLike):
        return _read_file(Path(os.fsdecode(source)))
    if isinstance(source, str):
        return _read_text(source)
    if isinstance(source, bytes | bytearray):
        got = "bytes (decode them to text first)"
    else:
        got = "None" if source is None else type(source).__name__
    raise _fail(f"a definition source must be a mapping, JSON/YAML text or a path, not {got}")


def _read_text(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped:
        raise _fail("the definition text is empty")
    if "\n" in text or stripped[0] in "{[":
        return _parse(text, "json" if stripped[0] in "{[" else "yaml")
    if text.lower().endswith(tuple(_EXTENSIONS)) or os.path.exists(text):
        return _read_file(Path(text))
    data = _parse(text, "yaml")
    if not isinstance(data, Mapping):
        raise _fail(f"{text!r} is neither a definition nor the path of an existing file")
    return data


def _read_file(path: Path) -> Any:
    if path.is_dir():
        raise _fail(f"{path}: is a directory, not a file")
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise _fail(f"{path}: unsupported file extension; use .json, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise _fail(f"{path}: file not found") from error
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(f"{path}: cannot be read: {_one_line(error)}") from error
    if not text.strip():
        raise _fail(f"{path}: the file is empty")
    return _parse(text, kind, path)


def _parse(text: str, kind: str, path: Path | None = None) -> Any:
    # RecursionError: deeply nested documents; ValueError: integers past Python's
    # digit limit. Both are the document's fault, so both are definition problems.
    try:
        return json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        if kind == "json" and path is None:
            # "{id: x}" is valid YAML flow style; report the JSON error only if
            # YAML cannot read it either.
            try:
                return _parse(text, "yaml")
            except DefinitionError:
                pass
        where = "" if path is None else f"{path}: "
        raise _fail(f"{where}not valid {kind.upper()}: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


class _Plain:
    """Copies data into plain JSON values, collecting what JSON cannot represent."""

    def __init__(self) -> None:
        self.problems: list[DefinitionProblem] = []
        self.count = 0

    def copy(self, value: Any, path: str, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _fail(f"the definition holds more than {MAX_VALUES} values")
        if depth > MAX_DEPTH:
            return self._refuse(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            return self._copy_mapping(value, path, depth)
        if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
            return [
                self.copy(item, jsonpath.child(path, i), depth + 1) for i, item in enumerate(value)
            ]
        if value is None or isinstance(value, str | bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else self._refuse(path, "not a finite number")
        name = type(value).__name__
        return self._refuse(path, f"a {name} is not a JSON value (quote it to make it a string)")

    def _copy_mapping(self, value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self._refuse(path, f"key {key!r} is not a string")
                continue
            plain[key] = self.copy(item, jsonpath.child(path, key), depth + 1)
        return plain

    def _refuse(self, path: str, message: str) -> None:
        self.problems.append(DefinitionProblem(path, message))


def to_json_data(value: Any) -> tuple[dict[str, Any], list[DefinitionProblem]]:
    """Copy read data into plain ``dict``/``list`` JSON values.

    Values JSON cannot hold (dates, sets, NaN, non-string keys, nesting deeper than
    :data:`MAX_DEPTH`) are reported and replaced by ``None``, so the other checks can
    still run on the rest.

    Args:
        value: What :func:`read_source` returned.

    Returns:
        The plain top-level object and the problems found.

    Raises:
        DefinitionError: The data is not a mapping, or is absurdly large.
    """
    if not isinstance(value, Mapping):
        got = "empty" if value is None else _type_name(value)
        raise _fail(f"a definition must be a mapping (JSON object), got {got}")
    plain = _Plain()
    data = plain.copy(value, jsonpath.ROOT, 0)
    return data, plain.problems


def structural_problems(data: dict[str, Any]) -> list[DefinitionProblem]:
    """Check plain data against the definition's JSON Schema.

    Returns:
        Every structural problem, ordered by position in the document.
    """
    errors = sorted(_VALIDATOR.iter_errors(data), key=_position)
    # Once each: jsonschema reports each missing required key as an error of its own.
    return list(dict.fromkeys(problem for error in errors for problem in _describe(error)))


def _describe(error: ValidationError) -> Iterator[DefinitionProblem]:
    path = jsonpath.join(jsonpath.ROOT, *error.absolute_path)
    # Typed Any: jsonschema types these loosely, and the schema fixes their shape.
    instance: Any = error.instance
    expected: Any = error.validator_value
    if error.validator == "additionalProperties":
        schema: Any = error.schema
        known = schema.get("properties", {})
        for key in instance:
            if key not in known:
                yield DefinitionProblem(jsonpath.child(path, key), _unknown_key(key, known))
    elif error.validator == "required":
        for key in expected:
            if key not in instance:
                yield DefinitionProblem(jsonpath.child(path, key), "required key is missing")
    elif error.validator == "type":
        names = " or ".join([expected] if isinstance(expected, str) else expected)
        yield DefinitionProblem(path, f"expected {names}, got {_type_name(instance)}")
    elif error.validator == "pattern" and str(expected).startswith("^\\$"):
        message = "must be one reference to the input, for example '${input.customer_id}'"
        yield DefinitionProblem(path, f"{instance!r} {message}")
    elif error.validator == "pattern":
        yield DefinitionProblem(
            path,
            f"{instance!r} is not a valid id: use letters, digits, '_' and '-', "
            "starting with a letter or '_'",
        )
    else:
        yield DefinitionProblem(path, error.message)


def _unknown_key(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _position(error: ValidationError) -> tuple[tuple[int, int | str], ...]:
    # Document order: "$.steps[10]" after "$.steps[2]", indices before keys.
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in error.absolute_path)
