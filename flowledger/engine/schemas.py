"""Checking step inputs and outputs against their JSON Schemas.

One validator per distinct schema, built once and reused: building checks the schema
against its metaschema (about half a millisecond), and ``jsonschema.validate`` on every
call is about 35 times slower than a kept validator. Validators check formats
(``date-time``, ``email``, ``uri``, ...) with the draft's own format checker.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from flowledger.domain.canonical import canonical_json, thaw
from flowledger.domain.jsonpath import ROOT, join
from flowledger.errors import DefinitionError, DefinitionProblem, SchemaValidationError

SchemaType = Literal["input", "output"]

MAX_ERRORS = 100
"""Most violations listed in one :class:`~flowledger.errors.SchemaValidationError`."""

MAX_ERROR_MESSAGE_CHARS = 500
"""Longest message of one violation (jsonschema quotes the offending value)."""


def validator(schema: Mapping[str, Any]) -> Validator:
    """Return the validator of ``schema``, built on first use and cached.

    Equal schemas share one validator, whatever their form (a definition's frozen
    mapping or a plain dict): the cache is keyed by the schema's canonical JSON.

    Args:
        schema: A JSON Schema (its ``$schema`` picks the draft; 2020-12 otherwise).

    Raises:
        DefinitionError: The schema is not a valid JSON Schema (definitions are
            checked when they load, so this means an unchecked schema).
    """
    return _validator(canonical_json(schema))


@functools.lru_cache(maxsize=1024)
def _validator(text: str) -> Validator:
    schema = json.loads(text)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as error:
        path = join(ROOT, *error.absolute_path)
        raise DefinitionError(
            [DefinitionProblem(path, f"invalid JSON Schema: {error.message}")]
        ) from error
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(schema: Mapping[str, Any], value: Any) -> list[dict[str, str]]:
    """Return every way ``value`` violates ``schema`` (empty when it matches).

    Args:
        schema: A JSON Schema.
        value: A JSON-like value; frozen mappings and tuples count as objects and
            arrays.

    Returns:
        ``{"path": "$.items[0].price", "message": ...}`` per violation, sorted by path
        (list indexes in numeric order), then message; at most :data:`MAX_ERRORS`, the
        last one saying how many more there were.
    """
    found = sorted(validator(schema).iter_errors(thaw(value)), key=_order)
    errors = [
        {"path": join(ROOT, *error.absolute_path), "message": _cut(error.message)}
        for error in found[:MAX_ERRORS]
    ]
    if len(found) > MAX_ERRORS:
        errors[-1] = {"path": ROOT, "message": f"... and {len(found) - MAX_ERRORS + 1} more"}
    return errors


def check(
    schema: Mapping[str, Any], value: Any, *, schema_type: SchemaType, step_id: str | None = None
) -> None:
    """Check ``value`` against ``schema``.

    Args:
        schema: A JSON Schema.
        value: The step's resolved parameters (input) or normalised output.
        schema_type: ``"input"`` or ``"output"``.
        step_id: The step checked, for the message.

    Raises:
        SchemaValidationError: The value does not match; ``errors`` lists every
            violation with its path.
        DefinitionError: The schema itself is invalid.
    """
    errors = schema_errors(schema, value)
    if errors:
        raise SchemaValidationError(schema_type, errors, step_id=step_id)


def _order(error: ValidationError) -> tuple[tuple[tuple[int, int, str], ...], str]:
    # Indexes sort as numbers ([2] before [10]), and before member names.
    steps = tuple(
        (0, key, "") if isinstance(key, int) else (1, 0, str(key)) for key in error.absolute_path
    )
    return steps, error.message


def _cut(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_ERROR_MESSAGE_CHARS]}... [cut]"
