"""The normalised, immutable form of a workflow definition.

Both input formats (a list of ``steps``, or ``nodes`` and ``connections``) load into
these values. ``WorkflowDefinition.to_dict()`` gives the canonical form: the steps
format with every key explicit, which loads back into an equal definition with the
same hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from flowledger.domain.canonical import canonical_json, sha256_hex, thaw

StepKind = Literal["action", "trigger"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing step is retried.

    Attributes:
        max_attempts: Attempts in all, the first included (1 means no retry).
        initial_interval: Seconds before the first retry.
        backoff: Factor by which the interval grows after each retry.
        max_interval: Upper bound of the interval, in seconds.
        jitter: Fraction (0 to 1) of each interval that is randomised away; 1 is full
            jitter (anywhere between 0 and the interval).
        non_retryable: Error type names that fail the step at once.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    jitter: float = 0.0
    non_retryable: tuple[str, ...] = ()

    def interval_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry), without jitter."""
        interval = float(self.initial_interval)
        # Grow step by step and stop at the cap: backoff**attempt overflows a float
        # long before a large max_attempts is reached.
        for _ in range(max(attempt - 2, 0)):
            if interval >= self.max_interval:
                break
            interval *= self.backoff
        return min(interval, float(self.max_interval))

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict of this policy."""
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": float(self.initial_interval),
            "backoff": float(self.backoff),
            "max_interval": float(self.max_interval),
            "jitter": float(self.jitter),
            "non_retryable": list(self.non_retryable),
        }


@dataclass(frozen=True)
class Compensation:
    """The action that undoes a completed step during rollback.

    Its parameters may reference ``${<own step id>.output...}``.
    """

    action: str
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict of this compensation."""
        return {"action": self.action, "parameters": thaw(self.parameters)}


@dataclass(frozen=True)
class PersonalData:
    """Whose personal data an execution holds, and which input fields are personal.

    Attributes:
        subject: A reference to the input naming the data subject, for example
            ``${input.customer_id}``.
        input: Dot paths of the personal input fields (``email``, ``address.street``).
    """

    subject: str
    input: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict of this declaration."""
        return {"subject": self.subject, "input": list(self.input)}


@dataclass(frozen=True)
class Retention:
    """How long an execution's payloads are kept after it ended.

    Attributes:
        days: Days after the end; then ``purge`` may destroy the payloads.
    """

    days: float

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict of this policy."""
        return {"days": float(self.days)}


@dataclass(frozen=True)
class Dependency:
    """An incoming edge of a step: the step waits for ``source``.

    The edge is active when ``source`` completed (or failed with ``continue_on_error``)
    and ``condition`` (if any) holds. Conditions read ``output``/``result``, ``status``
    and ``error`` of ``source``.
    """

    source: str
    condition: str | None = None

    def to_dict(self) -> str | dict[str, Any]:
        """Return the canonical form: the bare step id when unconditional."""
        if self.condition is None:
            return self.source
        return {"step": self.source, "condition": self.condition}


@dataclass(frozen=True)
class StepDefinition:
    """One step of a workflow.

    Attributes:
        id: Unique id within the workflow.
        kind: ``"action"``, or ``"trigger"`` for a graph trigger node, which runs no
            action and whose output is the execution input.
        action: Registered action name (None for triggers).
        parameters: Keyword arguments of the action; may hold ``${...}`` references.
        depends_on: Incoming edges, in definition order.
        condition: A guard evaluated when the step becomes ready; false skips it.
        continue_on_error: When true, a failure is recorded and downstream continues.
        timeout: Seconds an attempt may run, or None for no limit.
        retry: Retry policy, or None for the engine's default.
        input_schema: JSON Schema of the resolved parameters, or None.
        output_schema: JSON Schema of the output, or None.
        compensate: Action that undoes this step on rollback, or None.
        name: Human-readable name, or None.
        non_skippable: When true, no operator may skip the step.
        personal_data: True when the step's whole output is personal data of the
            execution's data subject, or dot paths of the personal fields in it.
    """

    id: str
    kind: StepKind = "action"
    action: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[Dependency, ...] = ()
    condition: str | None = None
    continue_on_error: bool = False
    timeout: float | None = None
    retry: RetryPolicy | None = None
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    compensate: Compensation | None = None
    name: str | None = None
    non_skippable: bool = False
    personal_data: bool | tuple[str, ...] = False

    @property
    def upstream_ids(self) -> tuple[str, ...]:
        """Ids of the steps this one directly waits for."""
        return tuple(dependency.source for dependency in self.depends_on)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict of this step.

        Every key is explicit, except those added after definitions were first
        recorded, which appear only when set: the hash of a definition that does not
        use them stays what it was.
        """
        canonical = {
            "id": self.id,
            "type": self.kind,
            "action": self.action,
            "parameters": thaw(self.parameters),
            "depends_on": [dependency.to_dict() for dependency in self.depends_on],
            "condition": self.condition,
            "continue_on_error": self.continue_on_error,
            "timeout": None if self.timeout is None else float(self.timeout),
            "retry": None if self.retry is None else self.retry.to_dict(),
            "input_schema": thaw(self.input_schema),
            "output_schema": thaw(self.output_schema),
            "compensate": None if self.compensate is None else self.compensate.to_dict(),
            "name": self.name,
        }
        if self.non_skippable:
            canonical["non_skippable"] = True
        if isinstance(self.personal_data, tuple):
            canonical["personal_data"] = list(self.personal_data)
        elif self.personal_data:
            canonical["personal_data"] = True
        return canonical


@dataclass(frozen=True)
class WorkflowDefinition:
    """A validated workflow: steps in deterministic topological order.

    Attributes:
        id: The workflow's id.
        steps: Steps in topological order (Kahn's algorithm, ties by definition order).
        name: Human-readable name, or None.
        description: Free text, or None.
        version: The author's version label, or None.
        input_schema: JSON Schema of the execution input, or None.
        hash: SHA-256 (hex) of the canonical JSON of :meth:`to_dict`.
        personal_data: Whose personal data executions hold, or None.
        retention: How long payloads are kept after the end, or None (for ever).
    """

    id: str
    steps: tuple[StepDefinition, ...]
    name: str | None = None
    description: str | None = None
    version: str | None = None
    input_schema: Mapping[str, Any] | None = None
    hash: str = ""
    personal_data: PersonalData | None = None
    retention: Retention | None = None

    _index: Mapping[str, StepDefinition] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _downstream: Mapping[str, tuple[StepDefinition, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _canonical: list[tuple[str, str]] = field(
        init=False, repr=False, compare=False, default_factory=list
    )

    def __post_init__(self) -> None:
        # Indexes built once, so the engine's lookups on every step transition are O(1).
        index = {step.id: step for step in self.steps}
        downstream: dict[str, list[StepDefinition]] = {step.id: [] for step in self.steps}
        for step in self.steps:
            for source in step.upstream_ids:
                if source in downstream:
                    downstream[source].append(step)
        object.__setattr__(self, "_index", MappingProxyType(index))
        frozen = {key: tuple(value) for key, value in downstream.items()}
        object.__setattr__(self, "_downstream", MappingProxyType(frozen))

    def step(self, step_id: str) -> StepDefinition:
        """Return the step with this id.

        Raises:
            KeyError: No such step.
        """
        return self._index[step_id]

    @property
    def step_ids(self) -> tuple[str, ...]:
        """Step ids in topological order."""
        return tuple(step.id for step in self.steps)

    def downstream(self, step_id: str) -> tuple[StepDefinition, ...]:
        """Steps with an incoming edge from ``step_id``, in topological order."""
        return self._downstream.get(step_id, ())

    def canonical(self) -> tuple[str, str]:
        """Return the canonical JSON text of :meth:`to_dict` and its SHA-256 (hex).

        Computed once per definition: every execution started from it records the text.
        """
        if not self._canonical:
            text = canonical_json(self.to_dict())
            self._canonical.append((text, sha256_hex(text)))
        return self._canonical[0]

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical definition, loadable by ``load_definition``.

        Keys added after definitions were first recorded (``personal_data``,
        ``retention``) appear only when set, so other definitions keep their hash.
        """
        canonical: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "input_schema": thaw(self.input_schema),
            "steps": [step.to_dict() for step in self.steps],
        }
        if self.personal_data is not None:
            canonical["personal_data"] = self.personal_data.to_dict()
        if self.retention is not None:
            canonical["retention"] = self.retention.to_dict()
        return canonical
