"""What an execution seals, and the guard that seals and opens its payloads (AES-GCM).

A definition that declares ``personal_data`` names its data subject (a reference to
the input) and marks personal input fields and step outputs. Those are sealed with the
subject's key wherever they are recorded: the input and inputs provided later, the
outputs of the marked steps (also in ``ExecutionCompleted`` and a skip's stand-in),
their compensations' outputs, and the parameters of any step whose parameter refers to
personal data (the whole value of that parameter). A definition that declares
``retention`` seals every payload, whole, with the execution's own key as well, so a
purge destroys them all at once. Conditions, errors, times and the definition itself
are never sealed: error messages an action raises should not carry personal data.

Opening needs the key: without it (forgotten, purged) a sealed value reads as
:data:`~flowledger.domain.sealing.REDACTED`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flowledger.domain.canonical import canonical_json, json_ready
from flowledger.domain.definition import WorkflowDefinition
from flowledger.domain.references import scan_references
from flowledger.domain.sealing import REDACTED, SEALED, is_sealed
from flowledger.engine.keystore import KeyStore
from flowledger.errors import CorruptRecordError

Path = tuple[str, ...]

MAX_POLICIES = 256
"""Definitions whose policy is kept (all are dropped when one more comes)."""

_OUTPUT_EVENTS = frozenset({"StepCompleted", "StepSkippedByOperator"})
_INPUT_FIELDS = frozenset({("ExecutionStarted", "input"), ("InputProvided", "inputs")})


@dataclass(frozen=True)
class SealingPolicy:
    """Which parts of an execution's payloads are personal, and whether all are retained.

    Attributes:
        subject: The reference naming the data subject (``input.customer_id``), or
            None when the definition declares no personal data.
        personal_input: Paths of the personal input fields.
        personal_outputs: By step id, the paths of its personal output fields
            (``((),)``: the whole output).
        personal_parameters: By step id, the names of parameters that refer to
            personal data.
        retained: True when every payload is also sealed with the execution's key.
    """

    subject: str | None
    personal_input: tuple[Path, ...] = ()
    personal_outputs: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    personal_parameters: Mapping[str, frozenset[str]] = field(default_factory=dict)
    retained: bool = False

    @classmethod
    def of(cls, definition: WorkflowDefinition) -> SealingPolicy | None:
        """Return the policy of a definition, or None when it seals nothing.

        Worked out once per definition (by its hash): engines and ledgers ask each time
        they start or load an execution.
        """
        if not definition.hash:  # built by hand, not loaded: nothing to key a cache by
            return cls._work_out(definition)
        if definition.hash not in _POLICIES:
            if len(_POLICIES) >= MAX_POLICIES:
                _POLICIES.clear()
            _POLICIES[definition.hash] = cls._work_out(definition)
        return _POLICIES[definition.hash]

    @classmethod
    def _work_out(cls, definition: WorkflowDefinition) -> SealingPolicy | None:
        declared = definition.personal_data
        retained = definition.retention is not None
        if declared is None:
            return cls(subject=None, retained=True) if retained else None
        policy = cls(
            subject=declared.subject.removeprefix("${").removesuffix("}"),
            personal_input=tuple(_split(path) for path in declared.input),
            personal_outputs={
                step.id: _marked_paths(step.personal_data)
                for step in definition.steps
                if step.personal_data
            },
            retained=retained,
        )
        parameters = {
            step.id: names
            for step in definition.steps
            if (names := policy.personal_parameters_of(step.parameters))
        }
        return replace(policy, personal_parameters=parameters)

    def personal_parameters_of(self, parameters: Mapping[str, Any]) -> frozenset[str]:
        """Names of the parameters whose template refers to a personal value."""
        return frozenset(
            name for name, template in parameters.items() if self._refers_to_personal(template)
        )

    def _refers_to_personal(self, template: Any) -> bool:
        found = scan_references(template).references
        return any(self._is_personal(reference.root, reference.path) for _, reference in found)

    def _is_personal(self, root: str, path: tuple[str | int, ...]) -> bool:
        names = tuple(str(part) for part in path)
        if root == "input":
            return any(_overlap(names, marked) for marked in self.personal_input)
        marked_paths = self.personal_outputs.get(root)
        if not marked_paths or not names or names[0] != "output":
            # A whole step result (``${step}``) is not a reference the grammar allows.
            return False
        return any(_overlap(names[1:], marked) for marked in marked_paths)


_POLICIES: dict[str, SealingPolicy | None] = {}


def _split(path: str) -> Path:
    return tuple(path.split("."))


def _marked_paths(marked: bool | tuple[str, ...]) -> tuple[Path, ...]:
    """The paths a step's ``personal_data`` marks: ``((),)`` is the whole output."""
    return ((),) if marked is True else tuple(_split(path) for path in marked or ())


def _overlap(read: Path, marked: Path) -> bool:
    """True when reading ``read`` reveals some of ``marked`` (one is a prefix of the other)."""
    shortest = min(len(read), len(marked))
    return read[:shortest] == marked[:shortest]


class AesPayloadGuard:
    """Seals an execution's payloads by its policy, and opens any sealed value.

    Args:
        policy: What to seal.
        keys: The key store.
        subject_key: The id of the data subject's key (None: no personal data).
        execution_key: The id of the execution's own key (None: not retained).
    """

    def __init__(
        self,
        policy: SealingPolicy,
        keys: KeyStore,
        subject_key: str | None,
        execution_key: str | None,
    ) -> None:
        self.policy = policy
        # Read once per guard: a key destroyed meanwhile stays usable by this guard
        # until it is dropped (a running execution keeps its key in memory).
        self._keys = CachedKeys(keys)
        self.subject_key = subject_key
        self.execution_key = execution_key

    def seal(self, event_name: str, field_name: str, step_id: str | None, value: Any) -> Any:
        """Seal the personal parts with the subject's key, then all with the execution's."""
        personal = self._personal_parts(event_name, field_name, step_id, value)
        if self.subject_key is not None:
            value = self._seal_paths(value, personal)
        if self.execution_key is not None:
            value = seal_value(self._keys, self.execution_key, value)
        return value

    def open(self, value: Any) -> Any:
        """Open every sealed value inside ``value`` (nested seals too)."""
        return open_sealed(self._keys, value)

    def _personal_parts(
        self, event_name: str, field_name: str, step_id: str | None, value: Any
    ) -> tuple[Path, ...]:
        """Paths to seal with the subject's key (the path ``()`` is the whole value)."""
        policy = self.policy
        if (event_name, field_name) in _INPUT_FIELDS:
            return policy.personal_input
        if event_name == "StepStarted" and step_id is not None:
            return tuple((name,) for name in policy.personal_parameters.get(step_id, ()))
        if step_id is not None and step_id in policy.personal_outputs:
            if event_name in _OUTPUT_EVENTS:
                return policy.personal_outputs[step_id]
            if event_name == "StepRolledBack":
                return ((),)
        if event_name == "ExecutionCompleted" and isinstance(value, Mapping):
            return tuple(
                (step, *path) for step, paths in policy.personal_outputs.items() for path in paths
            )
        return ()

    def _seal_paths(self, value: Any, paths: tuple[Path, ...]) -> Any:
        subject_key = self.subject_key or ""
        for path in sorted(paths, key=len):  # the whole value first, if it is marked

            def sealed(found: Any) -> Any:
                return found if is_sealed(found) else seal_value(self._keys, subject_key, found)

            value = _replace(value, path, sealed)
        return value


class CachedKeys:
    """A key store whose materials, once read or made, are kept in memory."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys
        self._materials: dict[str, bytes | None] = {}

    def material(self, key_id: str) -> bytes | None:  # noqa: D102 - see KeyStore
        if key_id not in self._materials:
            self._materials[key_id] = self._keys.material(key_id)
        return self._materials[key_id]

    def create(self, key_id: str) -> bytes:  # noqa: D102
        material = self._materials.get(key_id)
        if material is None:
            material = self._materials[key_id] = self._keys.create(key_id)
        return material

    def destroy(self, key_id: str) -> bool:  # noqa: D102
        self._materials.pop(key_id, None)
        return self._keys.destroy(key_id)

    def destroyed(self, key_id: str) -> bool:  # noqa: D102
        return self._keys.destroyed(key_id)

    def close(self) -> None:
        """Forget the materials read (the store stays open: it is not this one's)."""
        self._materials.clear()


def _replace(value: Any, path: Path, change: Any) -> Any:
    """Return ``value`` with the item at ``path`` changed (unchanged when it is absent)."""
    if not path:
        return change(value)
    if not isinstance(value, Mapping) or path[0] not in value:
        return value
    return {**value, path[0]: _replace(value[path[0]], path[1:], change)}


def seal_value(keys: KeyStore, key_id: str, value: Any) -> Any:
    """Return ``value`` sealed with a key (made if it does not exist yet).

    A key that was destroyed (its subject forgotten while an execution still ran) is
    never made again: the value is recorded as :data:`REDACTED` instead.
    """
    try:
        material = keys.create(key_id)
    except KeyError:
        return REDACTED
    nonce = os.urandom(12)
    plain = canonical_json(json_ready(value)).encode("utf-8")
    ciphertext = AESGCM(material).encrypt(nonce, plain, key_id.encode("utf-8"))
    envelope = {
        "key": key_id,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
    }
    return {SEALED: envelope}


def open_sealed(keys: KeyStore, value: Any) -> Any:
    """Return ``value`` with every sealed value opened, or :data:`REDACTED` without its key.

    Raises:
        CorruptRecordError: A sealed value does not decrypt with its (existing) key.
    """
    if is_sealed(value):
        envelope = value[SEALED]
        key_id = str(envelope.get("key"))
        material = keys.material(key_id)
        if material is None:
            return REDACTED
        try:
            plain = AESGCM(material).decrypt(
                base64.b64decode(envelope["nonce"]),
                base64.b64decode(envelope["ciphertext"]),
                key_id.encode("utf-8"),
            )
        except (InvalidTag, KeyError, ValueError, TypeError) as error:
            reason = f"a sealed value does not open with key {key_id} ({type(error).__name__})"
            raise CorruptRecordError(key_id, None, reason) from error
        return open_sealed(keys, json.loads(plain))
    if isinstance(value, Mapping):
        return {key: open_sealed(keys, item) for key, item in value.items()}
    if isinstance(value, list):
        return [open_sealed(keys, item) for item in value]
    return value
