"""Render a workflow definition as a Mermaid flowchart."""

from __future__ import annotations

from flowledger.domain.definition import WorkflowDefinition


def definition_to_mermaid(definition: WorkflowDefinition) -> str:
    """Return Mermaid ``flowchart TD`` text: one node per step, one arrow per dependency.

    Node names are positional (``s0``, ``s1``…) because step ids may hold characters that
    Mermaid reads as syntax; the step id is shown in the label. Conditional dependencies
    carry their condition as the arrow's label.
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
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
