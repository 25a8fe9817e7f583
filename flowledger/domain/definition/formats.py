"""The two definition formats, read into one intermediate shape.

Both the steps format and the graph format are read into a :class:`DefinitionDraft`:
steps (:class:`StepDraft`) with their options and where each was written, and edges
(:class:`EdgeDraft`) with where each was written. The checks run on drafts, and the
model is built from a draft once, whatever the format
(:func:`~flowledger.domain.definition.building.build_definition`).

Reading is defensive: the data may have failed the structural check, so a value of the
wrong type is left out (the structural check has already reported it) and the rest is
still read, letting the semantic checks run on whatever is well-formed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowledger.domain import jsonpath
from flowledger.domain.definition.model import (
    StepKind,
)
from flowledger.errors import DefinitionProblem

Problems = list[DefinitionProblem]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_str(item) for item in value)


# The keys a step, a graph node and a node's ``config`` share, with the type each must
# have to be read at all (the structural check reports the others).
OPTION_TYPES: Mapping[str, Callable[[Any], bool]] = {
    "action": _optional(_is_str),
    "parameters": _optional(_is_dict),
    "condition": _optional(_is_str),
    "continue_on_error": lambda value: isinstance(value, bool),
    "non_skippable": lambda value: isinstance(value, bool),
    "personal_data": lambda value: isinstance(value, bool) or _is_str_list(value),
    "timeout": _optional(_is_number),
    "retry": _optional(_is_dict),
    "input_schema": _optional(_is_dict),
    "output_schema": _optional(_is_dict),
    "compensate": _optional(_is_dict),
    "name": _optional(_is_str),
}
KINDS: tuple[StepKind, ...] = ("action", "trigger")


def normalise_condition(value: Any) -> str | None:
    """Return a condition's text, or None when absent or blank (an always-true edge)."""
    return value if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class EdgeDraft:
    """An edge ``source -> target`` as written (a ``depends_on`` entry or a connection).

    Attributes:
        source: The step waited for.
        target: The step that waits.
        condition: Normalised condition text, or None.
        path: Where the edge is written (for the implicit edge of the steps format,
            the path of the dependent step).
        source_path: Where the source id is written.
        target_path: Where the target id is written.
        condition_path: Where the condition is (or would be) written.
    """

    source: str
    target: str
    condition: str | None
    path: str
    source_path: str
    target_path: str
    condition_path: str


@dataclass
class StepDraft:
    """A step (or graph node) as written.

    Attributes:
        id: The step id.
        kind: ``"action"``/``"trigger"``, or None when ``type`` is malformed.
        path: Where the step is written.
        options: Well-typed optional keys, normalised (blank condition -> None, null
            parameters -> ``{}``).
        paths: Where each optional key was written.
        home: Where an optional key that is absent belongs.
    """

    id: str
    kind: StepKind | None
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    home: str = jsonpath.ROOT

    def where(self, key: str) -> str:
        """Return the path of option ``key``, or where it belongs when absent."""
        return self.paths.get(key) or jsonpath.child(self.home, key)


@dataclass
class DefinitionDraft:
    """A whole definition as written, in one shape for both formats.

    Attributes:
        top: Well-typed top-level keys (``id``, ``name``, ``description``,
            ``version`` as a string, ``input_schema``).
        steps: Steps with a string id, in definition order.
        edges: Edges in definition order (per target: its ``depends_on`` order, or its
            connections in connection-list order).
    """

    top: dict[str, Any]
    steps: list[StepDraft]
    edges: list[EdgeDraft]

    def incoming(self) -> dict[str, list[EdgeDraft]]:
        """Each step id's incoming edges, in order (unknown targets left out)."""
        incoming: dict[str, list[EdgeDraft]] = {step.id: [] for step in self.steps}
        for edge in self.edges:
            if edge.target in incoming:
                incoming[edge.target].append(edge)
        return incoming


def read_draft(data: Mapping[str, Any]) -> tuple[DefinitionDraft, Problems]:
    """Read plain definition data (either format) into a draft.

    Returns:
        The draft and the format problems found (both formats or neither, a node
        option given twice).
    """
    problems: Problems = []
    has_steps, has_nodes = "steps" in data, "nodes" in data
    if has_steps and (has_nodes or "connections" in data):
        extra = "nodes" if has_nodes else "connections"
        problems.append(
            DefinitionProblem(
                jsonpath.child(jsonpath.ROOT, extra),
                "give either 'steps', or 'nodes' and 'connections', not both formats",
            )
        )
    elif not has_steps and not has_nodes:
        where = "connections need 'nodes'" if "connections" in data else "no steps"
        problems.append(
            DefinitionProblem(jsonpath.ROOT, f"{where}: give 'steps', or 'nodes' and 'connections'")
        )
    if has_steps:
        steps, edges = _read_steps(_list(data.get("steps")), problems)
    else:
        steps, edges = _read_graph(
            _list(data.get("nodes")), _list(data.get("connections")), problems
        )
    return DefinitionDraft(_read_top(data), steps, edges), problems


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _read_top(data: Mapping[str, Any]) -> dict[str, Any]:
    top = {key: data.get(key) for key in ("id", "name", "description") if _is_str(data.get(key))}
    version = data.get("version")
    if _is_str(version) or (isinstance(version, int) and not isinstance(version, bool)):
        top["version"] = str(version)
    for key in ("input_schema", "personal_data", "retention"):
        if _is_dict(data.get(key)):
            top[key] = data[key]
    return top


def _read_steps(items: list[Any], problems: Problems) -> tuple[list[StepDraft], list[EdgeDraft]]:
    base = jsonpath.child(jsonpath.ROOT, "steps")
    steps: list[StepDraft] = []
    edges: list[EdgeDraft] = []
    previous: StepDraft | None = None
    for index, item in enumerate(items):
        path = jsonpath.child(base, index)
        step = _read_step(item, path, [(item, path)] if _is_dict(item) else [], problems)
        if step is None:
            previous = None
            continue
        steps.append(step)
        if "depends_on" in item:
            edges.extend(_read_dependencies(step, _list(item["depends_on"])))
        elif previous is not None and step.kind != "trigger" and previous.id != step.id:
            # A list reads as a sequence; a trigger starts one, it never waits. (A
            # repeated id is reported as a duplicate, not also as a self-dependency.)
            edges.append(
                _edge(previous.id, step.id, None, path, source_path=path, target_path=path)
            )
        previous = step
    return steps, edges


def _read_dependencies(step: StepDraft, entries: list[Any]) -> list[EdgeDraft]:
    base = jsonpath.child(step.path, "depends_on")
    target_path = jsonpath.child(step.path, "id")
    edges: list[EdgeDraft] = []
    for index, entry in enumerate(entries):
        path = jsonpath.child(base, index)
        if _is_dict(entry):
            source, source_path = entry.get("step"), jsonpath.child(path, "step")
            condition = entry.get("condition")
        else:
            source, source_path, condition = entry, path, None
        if _is_str(source):
            edge = _edge(
                source, step.id, condition, path, source_path=source_path, target_path=target_path
            )
            edges.append(edge)
    return edges


def _read_graph(
    nodes: list[Any], connections: list[Any], problems: Problems
) -> tuple[list[StepDraft], list[EdgeDraft]]:
    steps: list[StepDraft] = []
    for index, node in enumerate(nodes):
        path = jsonpath.join(jsonpath.ROOT, "nodes", index)
        config_path = jsonpath.child(path, "config")
        sources = [(node, path)] if _is_dict(node) else []
        if sources and _is_dict(node.get("config")):
            sources.append((node["config"], config_path))
        step = _read_step(node, path, sources, problems)
        if step is not None:
            step.home = config_path
            steps.append(step)
    edges: list[EdgeDraft] = []
    for index, connection in enumerate(connections):
        path = jsonpath.join(jsonpath.ROOT, "connections", index)
        if not _is_dict(connection):
            continue
        source, target = connection.get("source"), connection.get("target")
        if _is_str(source) and _is_str(target):
            source_path, target_path = (
                jsonpath.child(path, "source"),
                jsonpath.child(path, "target"),
            )
            condition = connection.get("condition")
            edges.append(
                _edge(
                    source,
                    target,
                    condition,
                    path,
                    source_path=source_path,
                    target_path=target_path,
                )
            )
    return steps, edges


def _edge(
    source: str, target: str, condition: Any, path: str, *, source_path: str, target_path: str
) -> EdgeDraft:
    # The condition is read, or would be written, right under the edge.
    condition_path = jsonpath.child(path, "condition")
    return EdgeDraft(
        source=source,
        target=target,
        condition=normalise_condition(condition),
        path=path,
        source_path=source_path,
        target_path=target_path,
        condition_path=condition_path,
    )


def _read_step(
    item: Any, path: str, sources: Sequence[tuple[dict[str, Any], str]], problems: Problems
) -> StepDraft | None:
    if not _is_dict(item) or not _is_str(item.get("id")):
        return None
    kind = item.get("type", "action")
    step = StepDraft(item["id"], kind if kind in KINDS else None, path, home=path)
    for source, source_path in sources:
        for key, well_typed in OPTION_TYPES.items():
            if key not in source:
                continue
            where = jsonpath.child(source_path, key)
            if key in step.paths:
                message = f"{key!r} is also given at {step.paths[key]}; give it in one place"
                problems.append(DefinitionProblem(where, message))
                continue
            step.paths[key] = where
            if well_typed(source[key]):
                step.options[key] = _normalise_option(key, source[key])
    return step


def _normalise_option(key: str, value: Any) -> Any:
    if key == "condition":
        return normalise_condition(value)
    if key == "parameters" and value is None:
        return {}
    return value
