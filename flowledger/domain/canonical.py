"""Canonical JSON, payload encoding and deep freezing of JSON-like values.

Canonical JSON is the one text form used wherever a value is hashed or stored as a
payload: sorted keys, no insignificant white space, UTF-8 characters kept, no NaN.
User payloads (inputs, parameters, outputs) are stored as canonical JSON *text*, so no
user value can collide with the event store's own markers (``_type_``/``_data_``) and
every payload round-trips exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a JSON-compatible value.

    Raises:
        TypeError: The value holds something JSON cannot represent.
        ValueError: The value holds NaN or an infinity.
    """
    return _CANONICAL.encode(thaw(value))


def canonical_json_of_plain(value: Any) -> str:
    """Return the canonical JSON text of a value made only of dicts, lists and scalars.

    :func:`canonical_json` without the copy that turns read-only mappings and tuples
    into dicts and lists, for values built that way already (the hash chain's).
    """
    return _CANONICAL.encode(value)


# One encoder for every call: ``json.dumps`` with non-default options builds a new one
# each time, which costs as much as encoding a small event.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def sha256_hex(text: str) -> str:
    """Return the SHA-256 of ``text`` (UTF-8) as 64 hex digits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_payload(value: Any) -> str:
    """Encode a user payload for storage in an event (canonical JSON text)."""
    return canonical_json(value)


def decode_payload(text: str) -> Any:
    """Decode a payload stored by :func:`encode_payload`."""
    return json.loads(text)


def freeze(value: Any) -> Any:
    """Return a deeply immutable copy: mappings become read-only, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Return a plain, mutable copy of a (possibly frozen) JSON-like value.

    Exact built-in types take a fast path (this runs on every resolved parameter and
    condition operand); other mappings and sequences are copied through the abstract
    checks.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list or kind is tuple:
        return [item if type(item) in _SCALARS else thaw(item) for item in value]
    if kind is dict or kind is MappingProxyType:
        return {key: item if type(item) in _SCALARS else thaw(item) for key, item in value.items()}
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [thaw(item) for item in value]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_ready(value: Any) -> Any:
    """Return ``value`` with datetimes as ISO 8601 text and containers as dicts and lists.

    These are the text forms the event store's transcoder uses, so a value read back
    from the store hashes and exports as it did when it was written.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {
            key: item if type(item) in _SCALARS else json_ready(item) for key, item in value.items()
        }
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value
