"""Building the model of a workflow definition from a draft that passed every check.

Whatever format a definition was written in, its draft
(:class:`~flowledger.domain.definition.formats.DefinitionDraft`) is built here into the
immutable :class:`~flowledger.domain.definition.model.WorkflowDefinition`, steps in
topological order, with its hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from flowledger.domain.canonical import canonical_json, freeze, sha256_hex
from flowledger.domain.definition.formats import DefinitionDraft, EdgeDraft, StepDraft
from flowledger.domain.definition.model import (
    Compensation,
    Dependency,
    PersonalData,
    Retention,
    RetryPolicy,
    StepDefinition,
    WorkflowDefinition,
)


def build_definition(draft: DefinitionDraft, order: Sequence[str]) -> WorkflowDefinition:
    """Build the immutable definition from a draft that passed every check.

    Args:
        draft: A draft with no problems.
        order: Step ids in topological order.

    Returns:
        The definition, its steps in ``order``, with its hash.
    """
    incoming = draft.incoming()
    by_id = {step.id: step for step in draft.steps}
    steps = tuple(_build_step(by_id[step_id], incoming[step_id]) for step_id in order)
    top = draft.top
    schema = top.get("input_schema")
    unhashed = WorkflowDefinition(
        id=top["id"],
        steps=steps,
        name=top.get("name"),
        description=top.get("description"),
        version=top.get("version"),
        input_schema=None if schema is None else freeze(schema),
        personal_data=_build_personal_data(top.get("personal_data")),
        retention=_build_retention(top.get("retention")),
    )
    digest = sha256_hex(canonical_json(unhashed.to_dict()))
    return replace(unhashed, hash=digest)


def _build_step(step: StepDraft, edges: Sequence[EdgeDraft]) -> StepDefinition:
    options = step.options
    timeout = options.get("timeout")
    return StepDefinition(
        id=step.id,
        kind=step.kind or "action",
        action=options.get("action"),
        parameters=freeze(options.get("parameters", {})),
        depends_on=tuple(Dependency(edge.source, edge.condition) for edge in edges),
        condition=options.get("condition"),
        continue_on_error=options.get("continue_on_error", False),
        non_skippable=options.get("non_skippable", False),
        personal_data=_personal_output(options.get("personal_data", False)),
        timeout=None if timeout is None else float(timeout),
        retry=build_retry(options.get("retry")),
        input_schema=_frozen_schema(options.get("input_schema")),
        output_schema=_frozen_schema(options.get("output_schema")),
        compensate=_build_compensation(options.get("compensate")),
        name=options.get("name"),
    )


def _build_personal_data(raw: Mapping[str, Any] | None) -> PersonalData | None:
    if raw is None:
        return None
    return PersonalData(subject=raw["subject"], input=tuple(raw.get("input", ())))


def _build_retention(raw: Mapping[str, Any] | None) -> Retention | None:
    return None if raw is None else Retention(days=float(raw["days"]))


def _personal_output(raw: bool | list[str]) -> bool | tuple[str, ...]:
    return tuple(raw) if isinstance(raw, list) else raw


def build_retry(raw: Mapping[str, Any] | None) -> RetryPolicy | None:
    """Build a retry policy; absent keys take :class:`RetryPolicy`'s defaults.

    ``jitter`` may be a boolean: true is full jitter (1.0), false none (0.0).
    """
    if raw is None:
        return None
    default = RetryPolicy()
    jitter = raw.get("jitter", default.jitter)
    if isinstance(jitter, bool):
        jitter = 1.0 if jitter else 0.0
    return RetryPolicy(
        max_attempts=int(raw.get("max_attempts", default.max_attempts)),
        initial_interval=float(raw.get("initial_interval", default.initial_interval)),
        backoff=float(raw.get("backoff", default.backoff)),
        max_interval=float(raw.get("max_interval", default.max_interval)),
        jitter=float(jitter),
        non_retryable=tuple(raw.get("non_retryable", default.non_retryable)),
    )


def _frozen_schema(schema: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if schema is None else freeze(schema)


def _build_compensation(raw: Mapping[str, Any] | None) -> Compensation | None:
    if raw is None:
        return None
    return Compensation(action=raw["action"], parameters=freeze(raw.get("parameters") or {}))
