"""JSON paths for error messages: ``$.steps[2].retry.max_attempts``."""

from __future__ import annotations

import re

ROOT = "$"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def child(base: str, key: str | int) -> str:
    """Return the path of ``key`` (a member name or a list index) below ``base``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{base}.{key}"
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{base}['{escaped}']"


def join(base: str, *keys: str | int) -> str:
    """Return the path of a nested member below ``base``."""
    path = base
    for key in keys:
        path = child(path, key)
    return path
