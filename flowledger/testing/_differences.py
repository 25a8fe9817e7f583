"""How two values differ, path by path, for the messages of property violations."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

SHOWN_CHARS = 200
"""Longest value shown in a difference."""


def difference(expected: Any, found: Any) -> str:
    """Describe how ``found`` differs from ``expected``, path by path."""
    lines = _differences(_plain(expected), _plain(found), "")
    return "; ".join(lines) if lines else "(no difference)"


def _differences(expected: Any, found: Any, path: str) -> list[str]:
    if isinstance(expected, Mapping) and isinstance(found, Mapping):
        lines: list[str] = []
        for key in sorted(set(expected) | set(found), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in found:
                lines.append(f"{where}: missing, expected {_show(expected[key])}")
            elif key not in expected:
                lines.append(f"{where}: unexpected {_show(found[key])}")
            else:
                lines.extend(_differences(expected[key], found[key], where))
        return lines
    if expected == found:
        return []
    return [f"{path or 'value'}: expected {_show(expected)}, found {_show(found)}"]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
