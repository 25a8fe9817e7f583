"""Semantic checks of a definition draft: ids, edges, cycles, references, conditions, schemas.

Every check collects problems and carries on; none stops at the first. The checks read
drafts defensively (see :mod:`~flowledger.domain.definition.formats`): a value of the
wrong type was reported by the structural check and is skipped here.
"""

from __future__ import annotations

import difflib
import json
import keyword
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from flowledger.domain import jsonpath
from flowledger.domain.canonical import canonical_json
from flowledger.domain.conditions import SOURCE_NAMES, compile_condition
from flowledger.domain.definition.formats import DefinitionDraft, EdgeDraft, StepDraft
from flowledger.domain.definition.graph import Ancestry, find_cycles, topological_order
from flowledger.domain.definition.model import RetryPolicy
from flowledger.domain.references import Reference, scan_references
from flowledger.errors import DefinitionProblem

INPUT_ROOT = "input"
"""Reference root of the execution input; reserved, so no step may take it as its id."""

# What a trigger cannot have: it runs no action, so these would be silently ignored.
_ACTION_ONLY = ("action", "parameters", "retry", "timeout", "compensate")


@dataclass(frozen=True)
class _Scope:
    """Which steps a reference (or ``steps.<id>`` in a condition) may read, and how to say so.

    Attributes:
        consumer: Step whose (transitive) upstream steps may be referenced.
        itself: One more step that may be referenced (the step itself in
            ``compensate.parameters``, the source of an edge condition), or None.
        where: Names the place for messages, e.g. ``"step 'b'"``.
    """

    consumer: str
    itself: str | None
    where: str


class _Checker:
    """Runs every semantic check over one draft, collecting problems."""

    def __init__(self, draft: DefinitionDraft) -> None:
        self.draft = draft
        self.problems: list[DefinitionProblem] = []
        self.first: dict[str, StepDraft] = {}
        for step in draft.steps:
            self.first.setdefault(step.id, step)
        self.incoming = draft.incoming()
        self.upstream = {
            step_id: [
                edge.source
                for edge in edges
                if edge.source in self.first and edge.source != step_id
            ]
            for step_id, edges in self.incoming.items()
        }
        self.order, blocked = topological_order(list(self.first), self.upstream)
        self.blocked = blocked
        self.ancestry = Ancestry(self.order, self.upstream)

    def add(self, path: str, message: str) -> None:
        self.problems.append(DefinitionProblem(path, message))

    def run(self) -> list[DefinitionProblem]:
        self.check_ids()
        self.check_edges()
        self.check_cycles()
        for step in self.draft.steps:
            self.check_step(step)
        top_schema = self.draft.top.get("input_schema")
        if top_schema is not None:
            self.check_schema(top_schema, jsonpath.child(jsonpath.ROOT, "input_schema"))
        self.check_personal_data()
        return self.problems

    def check_personal_data(self) -> None:
        """Personal outputs need a data subject; a trigger's output is the input."""
        declared = "personal_data" in self.draft.top
        for step in self.draft.steps:
            if not step.options.get("personal_data"):
                continue
            if not declared:
                message = "personal data needs a data subject: declare personal_data.subject"
                self.add(step.where("personal_data"), message)
            elif step.kind == "trigger":
                message = "a trigger's output is the input: mark personal_data.input instead"
                self.add(step.where("personal_data"), message)

    def check_ids(self) -> None:
        for step in self.draft.steps:
            id_path = jsonpath.child(step.path, "id")
            first = self.first[step.id]
            if first is not step:
                self.add(id_path, f"duplicate step id {step.id!r} (first used at {first.path})")
            if step.id == INPUT_ROOT:
                self.add(id_path, "'input' is reserved for the execution input; choose another id")

    def check_edges(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for edge in self.draft.edges:
            for step_id, path in ((edge.source, edge.source_path), (edge.target, edge.target_path)):
                if step_id not in self.first:
                    self.add(path, f"unknown step {step_id!r}{_suggest(step_id, self.first)}")
            if edge.source == edge.target:
                self.add(edge.path, f"step {edge.source!r} depends on itself")
            elif (edge.source, edge.target) in seen:
                first = seen[(edge.source, edge.target)]
                self.add(
                    edge.path, f"duplicate edge {edge.source} -> {edge.target} (first at {first})"
                )
            seen.setdefault((edge.source, edge.target), edge.path)
            target = self.first.get(edge.target)
            if target is not None and target.kind == "trigger":
                self.add(edge.path, f"trigger {edge.target!r} cannot wait for other steps")
            if edge.condition is not None and edge.source in self.first and target is not None:
                self.check_edge_condition(edge)

    def check_cycles(self) -> None:
        for cycle in find_cycles(self.blocked, self.upstream):
            closing = next(
                edge.path for edge in self.incoming[cycle.path[0]] if edge.source == cycle.path[-1]
            )
            self.add(closing, f"cycle: {cycle.describe()}")

    def check_step(self, step: StepDraft) -> None:
        options = step.options
        if step.kind == "trigger":
            for key in _ACTION_ONLY:
                value = options.get(key)
                if value is not None and (value or key != "parameters"):
                    self.add(
                        step.where(key), f"a trigger runs no action, so it cannot have {key!r}"
                    )
        # Absent or null; an action of the wrong type was reported by the structural check.
        elif (
            step.kind == "action"
            and options.get("action") is None
            and ("action" in options or "action" not in step.paths)
        ):
            self.add(step.where("action"), "an action step needs an 'action' (or type 'trigger')")
        self.check_retry(step)
        for key in ("input_schema", "output_schema"):
            if options.get(key) is not None:
                self.check_schema(options[key], step.where(key))
        own = _Scope(step.id, None, f"step {step.id!r}")
        self.check_references(options.get("parameters"), step.where("parameters"), own)
        compensate = options.get("compensate")
        if isinstance(compensate, dict):
            scope = _Scope(step.id, step.id, f"the compensation of {step.id!r}")
            parameters_path = jsonpath.child(step.where("compensate"), "parameters")
            self.check_references(compensate.get("parameters"), parameters_path, scope)
        if options.get("condition") is not None:
            self.check_guard(step, options["condition"])

    def check_retry(self, step: StepDraft) -> None:
        retry = step.options.get("retry")
        if not isinstance(retry, dict):
            return
        default = RetryPolicy()
        initial = retry.get("initial_interval", default.initial_interval)
        ceiling = retry.get("max_interval", default.max_interval)
        if _is_number(initial) and _is_number(ceiling) and ceiling < initial:
            given = "" if "max_interval" in retry else " (the default)"
            self.add(
                jsonpath.child(step.where("retry"), "max_interval"),
                f"max_interval {ceiling}{given} is below initial_interval {initial}",
            )

    def check_schema(self, schema: Mapping[str, Any], path: str) -> None:
        declared = schema.get("$schema")
        if declared is not None and not isinstance(declared, str):
            self.add(jsonpath.child(path, "$schema"), "'$schema' must be a string (a URI)")
            return
        found = _schema_error(canonical_json(schema))
        if found is not None:
            where, message = found
            self.add(jsonpath.join(path, *where), f"not a valid JSON Schema: {message}")

    def check_references(self, value: Any, path: str, scope: _Scope) -> None:
        if value is None:
            return
        scan = scan_references(value)
        for relative, message in scan.problems:
            self.add(path + relative, message)
        for relative, reference in scan.references:
            self.check_root(reference, path + relative, scope)

    def check_root(self, reference: Reference, path: str, scope: _Scope) -> None:
        root = reference.root
        if root == INPUT_ROOT:
            return
        text = f"${{{reference.expression}}}"
        if root in self.first:
            self.check_step_read(root, text, path, scope)
        else:
            hint = _suggest(root, [INPUT_ROOT, *self.first])
            self.add(path, f"{text}: unknown root {root!r}, neither 'input' nor a step id{hint}")

    def check_steps_read(self, step_ids: Iterable[str], path: str, scope: _Scope) -> None:
        # steps.<id> in a condition reads the same result as ${<id>...}: same rules.
        for step_id in sorted(step_ids):
            text = _steps_text(step_id)
            if step_id in self.first:
                self.check_step_read(step_id, text, path, scope)
            else:
                self.add(path, f"{text}: unknown step {step_id!r}{_suggest(step_id, self.first)}")

    def check_step_read(self, step_id: str, text: str, path: str, scope: _Scope) -> None:
        """Check that ``scope`` may read the result of ``step_id``, a known step.

        Args:
            step_id: The step read.
            text: How the author wrote the read (``${a.output}``, ``steps.a``), for messages.
            path: Where to report a problem.
            scope: Which steps may be read there.
        """
        if step_id == scope.itself:
            return
        if step_id == scope.consumer:
            self.add(path, f"{text}: {scope.where} cannot reference its own result")
        elif not self.ancestry.is_upstream(step_id, scope.consumer):
            self.add(
                path,
                f"{text}: step {step_id!r} is not upstream of {scope.where}; "
                "it may not have run yet (add it to depends_on)",
            )

    def check_guard(self, step: StepDraft, text: str) -> None:
        path = step.where("condition")
        names = self.check_condition(text, path, _Scope(step.id, None, f"step {step.id!r}"))
        dependencies = len(self.incoming[step.id])
        for name in sorted(names & SOURCE_NAMES):
            if dependencies != 1:
                self.add(
                    path,
                    f"{name!r} in a step's condition means its single dependency's {name}, "
                    f"but {step.id!r} has {dependencies} dependencies; "
                    f"use ${{<step>.output...}} or steps.<step id> instead",
                )

    def check_edge_condition(self, edge: EdgeDraft) -> None:
        # Edges are evaluated when their source finishes: the source and its upstream
        # steps are the only ones sure to have a result by then.
        scope = _Scope(edge.source, edge.source, f"the edge {edge.source} -> {edge.target}")
        assert edge.condition is not None
        self.check_condition(edge.condition, edge.condition_path, scope)

    def check_condition(self, text: str, path: str, scope: _Scope) -> frozenset[str]:
        condition, messages = compile_condition(text)
        for message in messages:
            self.add(path, message)
        if condition is None:
            return frozenset()
        for reference in condition.references:
            self.check_root(reference, path, scope)
        self.check_steps_read(condition.step_ids, path, scope)
        return condition.names


@lru_cache(maxsize=1024)
def _schema_error(text: str) -> tuple[tuple[str | int, ...], str] | None:
    # Checking against a metaschema costs about half a millisecond; the same schemas
    # come back (one definition loaded per execution), so results are cached by text.
    schema = json.loads(text)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as error:
        return tuple(error.absolute_path), error.message
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _steps_text(step_id: str) -> str:
    # As the author could have written it: steps.charge-card would be a subtraction.
    if step_id.isidentifier() and not keyword.iskeyword(step_id):
        return f"steps.{step_id}"
    return f"steps[{step_id!r}]"


def _suggest(name: str, known: Iterable[str]) -> str:
    candidates: Collection[str] = list(known)
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_draft(draft: DefinitionDraft) -> tuple[list[DefinitionProblem], list[str]]:
    """Check a draft's meaning and order its steps.

    Args:
        draft: What :func:`~flowledger.domain.definition.formats.read_draft` read.

    Returns:
        Every problem found (in check order: ids, edges, cycles, then step by step),
        and the step ids in topological order, ties by definition order (complete only
        when there is no problem: steps on or after a cycle are left out).
    """
    checker = _Checker(draft)
    return checker.run(), checker.order
