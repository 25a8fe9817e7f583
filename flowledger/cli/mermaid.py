"""Render a workflow definition as a Mermaid flowchart."""

from __future__ import annotations

from collections.abc import Mapping

from flowledger.domain.definition import WorkflowDefinition

STATUS_STYLES = {
    "PENDING": "fill:#f8f9fa,stroke:#adb5bd,color:#212529",
    "RUNNING": "fill:#cfe2ff,stroke:#0d6efd,color:#052c65",
    "COMPLETED": "fill:#d1e7dd,stroke:#198754,color:#0a3622",
    "FAILED": "fill:#f8d7da,stroke:#dc3545,color:#58151c",
    "SKIPPED": "fill:#e9ecef,stroke:#6c757d,color:#495057,stroke-dasharray:5 5",
    "PAUSED": "fill:#fff3cd,stroke:#ffc107,color:#664d03",
    "CANCELLED": "fill:#e2e3e5,stroke:#343a40,color:#343a40",
    "COMPENSATING": "fill:#ffe5d0,stroke:#fd7e14,color:#653208",
    "ROLLED_BACK": "fill:#ffe5d0,stroke:#fd7e14,color:#653208",
    "COMPENSATION_FAILED": "fill:#f8d7da,stroke:#842029,color:#58151c,stroke-width:3px",
}
"""The Mermaid style of a step in each status (``graph --execution``)."""


def definition_to_mermaid(
    definition: WorkflowDefinition, statuses: Mapping[str, str] | None = None
) -> str:
    """Return Mermaid ``flowchart TD`` text: one node per step, one arrow per dependency.

    Node names are positional (``s0``, ``s1``…) because step ids may hold characters that
    Mermaid reads as syntax; the step id is shown in the label. Conditional dependencies
    carry their condition as the arrow's label.

    Args:
        definition: The workflow to draw.
        statuses: Step id to step status (of one execution); each step with a status
            is coloured by a ``classDef`` named after it. Unknown statuses are ignored.
    """
    node = {step.id: f"s{index}" for index, step in enumerate(definition.steps)}
    lines = ["flowchart TD"]
    for step in definition.steps:
        label = _escape(step.name or step.id)
        detail = _escape("trigger" if step.kind == "trigger" else step.action or "")
        opening, closing = ("([", "])") if step.kind == "trigger" else ("[", "]")
        lines.append(f'    {node[step.id]}{opening}"{label}<br/>{detail}"{closing}')
    for step in definition.steps:
        for dependency in step.depends_on:
            arrow = f'-->|"{_escape(dependency.condition)}"|' if dependency.condition else "-->"
            lines.append(f"    {node[dependency.source]} {arrow} {node[step.id]}")
    lines.extend(_status_classes(node, statuses or {}))
    return "\n".join(lines) + "\n"


def _status_classes(node: Mapping[str, str], statuses: Mapping[str, str]) -> list[str]:
    """``classDef`` and ``class`` lines colouring each step by its status."""
    members: dict[str, list[str]] = {}
    for step_id, name in node.items():
        status = statuses.get(step_id)
        if status is not None and status in STATUS_STYLES:
            members.setdefault(status, []).append(name)
    lines = []
    for status, style in STATUS_STYLES.items():  # a fixed order, so the text is stable
        if status in members:
            class_name = status.lower()
            lines.append(f"    classDef {class_name} {style}")
            lines.append(f"    class {','.join(members[status])} {class_name}")
    return lines


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
