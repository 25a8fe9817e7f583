"""The recorded state of an execution, its guards, and the values derived from it.

:class:`ExecutionRecord` is the half of the ``Execution`` aggregate that holds state:
what the events record, the checks every command makes, the one path from a command to
an event, and the queries. The commands themselves are in
:mod:`flowledger.domain.execution`.

The aggregate keeps the minimum, in a form that survives the event store's JSON
transcoder unchanged (so a snapshot equals a full replay): plain strings for statuses,
payloads as JSON text, dicts and lists, no tuples, sets or enums. What callers read
(:class:`~flowledger.domain.state.ExecutionState`) is derived on demand, so replaying
events stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from flowledger.domain.canonical import decode_payload
from flowledger.domain.chain import GENESIS, chained
from flowledger.domain.lifecycles import EXECUTION_LIFECYCLE, STEP_LIFECYCLE
from flowledger.domain.sealing import guard_of, seal_payloads
from flowledger.domain.state import ExecutionState, StepState
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.domain.step_changes import note_step_change, step_changes_since
from flowledger.domain.step_packing import unpack_steps
from flowledger.domain.step_records import STEP_KEY_PREFIX, StepRecord, step_key
from flowledger.domain.step_states import copied_error, step_state, step_states_of
from flowledger.errors import InvalidTransitionError

if TYPE_CHECKING:
    from flowledger.domain.events import ExecutionEvent

TERMINAL = EXECUTION_LIFECYCLE.terminal
NON_TERMINAL = frozenset(EXECUTION_LIFECYCLE.states) - TERMINAL
_COMPLETED_STEP = StepStatus.COMPLETED.value
_STEP_STATUSES = {status.value: status for status in StepStatus}


def aware(at: datetime, name: str = "at") -> datetime:
    """Return ``at`` after checking it is timezone-aware.

    Raises:
        ValueError: ``at`` is naive; recorded times must name their zone.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        msg = f"{name} must be a timezone-aware datetime, got naive {at.isoformat()}"
        raise ValueError(msg)
    return at


def deep_merge(base: Any, patch: Any) -> Any:
    """Merge ``patch`` into ``base``: dicts merge key by key, anything else replaces."""
    if not (isinstance(base, Mapping) and isinstance(patch, Mapping)):
        return patch
    merged = dict(base)
    for key, value in patch.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else value
    return merged


class ExecutionRecord(Aggregate):
    """What an execution records, its queries, and the checks its commands make."""

    if TYPE_CHECKING:
        # Set by the first claim, never in __init__: snapshots taken before workers
        # were recorded do not hold it, and a loaded execution must equal its replay.
        _worker: str | None

    def __init__(self) -> None:
        """Prepare an empty, PENDING execution (``ExecutionStarted`` fills it in)."""
        self._execution_id = ""
        self._workflow_id = ""
        self._definition = ""
        self._definition_hash = ""
        self._inputs: list[str] = []
        self._status = ExecutionStatus.PENDING.value
        self._steps: dict[str, StepRecord] = {}
        self._completed: list[str] = []
        self._error: dict[str, Any] | None = None
        self._paused_on: str | None = None
        self._cancel_requested = False
        self._cancel_rollback = False
        self._chain_head = GENESIS

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # An execution loaded from a snapshot holds its step records packed
            # (flowledger.domain.snapshot): they are unpacked the first time they are
            # read, so a load that reads no step does not pay for thousands of them.
            if name == "_steps" and "_packed_steps" in self.__dict__:
                steps = self.__dict__["_steps"] = unpack_steps(self.__dict__.pop("_packed_steps"))
                return steps
            msg = f"{type(self).__name__!r} object has no attribute {name!r}"
            raise AttributeError(msg)

    def __eq__(self, other: object) -> bool:
        """Equal when of one class with equal recorded state (packed or not)."""
        if type(self) is not type(other):
            return False
        assert isinstance(other, ExecutionRecord)
        return self._steps == other._steps and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    @property
    def execution_id(self) -> str:
        """The execution's public id."""
        return self._execution_id

    @property
    def status(self) -> ExecutionStatus:
        """Where the execution is in its lifecycle."""
        return ExecutionStatus(self._status)

    @property
    def is_terminal(self) -> bool:
        """True when the engine has nothing more to do (see ``ExecutionStatus.is_terminal``)."""
        return self._status in TERMINAL

    @property
    def chain_head(self) -> str:
        """Hash of the latest event."""
        return self._chain_head

    @property
    def worker(self) -> str | None:
        """The worker whose lease drives the execution, or None (not claimed)."""
        worker: str | None = self.__dict__.get("_worker")
        return worker

    @property
    def cancel_requested(self) -> bool:
        """True once cancelling was asked for."""
        return self._cancel_requested

    @property
    def cancel_rolls_back(self) -> bool:
        """True when the requested cancel rolls completed steps back."""
        return self._cancel_rollback

    def state(self) -> ExecutionState:
        """Return the execution's state as a read-only value.

        ``outputs`` holds the outputs of steps whose status is COMPLETED, that is, whose
        effect stands: a step being compensated, rolled back, or whose compensation
        failed is left out (its ``StepState.output`` still shows what it returned).
        """
        cache = step_states_of(self)
        steps = {}
        for key, record in self._steps.items():
            cached = cache.get(key)
            if cached is None or cached[0] != record["version"]:
                step_id = key.removeprefix(STEP_KEY_PREFIX)
                cached = cache[key] = (record["version"], self._step_state_of(step_id, record))
            steps[cached[1].step_id] = cached[1]
        return ExecutionState(
            execution_id=self._execution_id,
            workflow_id=self._workflow_id,
            status=ExecutionStatus(self._status),
            input=self.execution_input(),
            steps=steps,
            outputs={
                step_id: step.output
                for step_id, step in steps.items()
                if step.status is StepStatus.COMPLETED
            },
            error=copied_error(self._error),
            paused_on=self._paused_on,
            version=self.version,
            created_at=self.created_on,
            updated_at=self.modified_on,
            definition_hash=self._definition_hash,
            cancel_requested=self._cancel_requested,
            worker=self.worker,
        )

    # -- reading one step at a time (the planner reads only what changed) -------------

    def step_ids(self) -> list[str]:
        """Return the ids of the steps, in the definition's (topological) order."""
        return [key.removeprefix(STEP_KEY_PREFIX) for key in self._steps]

    def step_status(self, step_id: str) -> StepStatus:
        """Return where one step is in its lifecycle.

        Raises:
            KeyError: No such step.
        """
        return _STEP_STATUSES[self._steps[step_key(step_id)]["status"]]

    def step_not_before(self, step_id: str) -> datetime | None:
        """Return when one step's scheduled retry may start, or None.

        Raises:
            KeyError: No such step.
        """
        not_before: datetime | None = self._steps[step_key(step_id)]["not_before"]
        return not_before

    def step_state(self, step_id: str) -> StepState:
        """Return one step's state, as :meth:`state` has it, without the other steps'.

        Raises:
            KeyError: No such step.
        """
        key = step_key(step_id)
        record = self._steps[key]
        cache = step_states_of(self)
        cached = cache.get(key)
        if cached is None or cached[0] != record["version"]:
            cached = cache[key] = (record["version"], self._step_state_of(step_id, record))
        return cached[1]

    def _step_state_of(self, step_id: str, record: StepRecord) -> StepState:
        payload_guard = guard_of(self)
        return step_state(step_id, record, None if payload_guard is None else payload_guard.open)

    def execution_input(self) -> dict[str, Any]:
        """Return the execution input, with inputs provided later merged in (a new dict).

        Sealed values are opened by the attached guard (see :mod:`~.sealing`).
        """
        merged: dict[str, Any] = {}
        payload_guard = guard_of(self)
        for text in self._inputs:
            provided = decode_payload(text)
            if payload_guard is not None:
                provided = payload_guard.open(provided)
            merged = deep_merge(merged, provided)
        return merged

    def steps_changed_since(self, version: int) -> list[str] | None:
        """Return the ids of the steps whose record changed after ``version``, or None.

        A reader that derives values from the steps reads them all once, then only the
        ones that changed since the version it read: it passes that version here. The
        changes are followed from the first call on this object on (which returns None);
        the ids come in the order of the changes and may repeat.

        Returns:
            The ids, or None when the changes since ``version`` are not known: on the
            first call, for a version this object never had, or for one older than the
            version of an earlier call. Read every step then.
        """
        return step_changes_since(self, version)

    @property
    def definition_hash(self) -> str:
        """SHA-256 of the canonical definition this execution runs."""
        return self._definition_hash

    def definition_dict(self) -> dict[str, Any]:
        """Return the canonical definition the execution runs (a fresh copy)."""
        definition: dict[str, Any] = json.loads(self._definition)
        return definition

    def steps_to_compensate(self) -> list[str]:
        """Return the COMPLETED steps that declare ``compensate``, last completed first."""
        compensable = self._compensable()
        return [
            step_id
            for step_id in reversed(self._completed)
            if step_id in compensable
            and self._steps[step_key(step_id)]["status"] == _COMPLETED_STEP
        ]

    def _compensable(self) -> frozenset[str]:
        """Ids of the steps whose definition declares ``compensate``."""
        return _compensable_ids(self._definition)

    # -- the checks, and the one path from a command to an event ---------------------

    def _require(
        self, trigger: str, at: datetime, allowed: frozenset[str], *, new_work: bool = False
    ) -> None:
        """Check ``at`` and that the execution's status is in ``allowed``.

        ``new_work`` also refuses once a cancel was requested.
        """
        aware(at)
        if self._status not in allowed:
            raise InvalidTransitionError("execution", self._status, trigger, self._execution_id)
        if new_work and self._cancel_requested:
            state = f"{self._status} (cancel requested)"
            raise InvalidTransitionError("execution", state, trigger, self._execution_id)

    def _record_of(self, step_id: str, trigger: str) -> StepRecord:
        """Return a step's record; an unknown step is in state UNDEFINED."""
        record = self._steps.get(step_key(step_id))
        if record is None:
            raise InvalidTransitionError("step", "UNDEFINED", trigger, step_id)
        return record

    def _changing_step(self, step_id: str, version: int) -> StepRecord:
        """Return the record of a step that the event of ``version`` changes."""
        note_step_change(self, step_id, version)
        return self._steps[step_key(step_id)]

    def _check_step(
        self,
        step_id: str,
        trigger: str,
        at: datetime,
        allowed: frozenset[str] = NON_TERMINAL,
        *,
        new_work: bool = False,
    ) -> StepRecord:
        """Check the execution (see :meth:`_require`), then the step's lifecycle."""
        self._require(f"{trigger}_step", at, allowed, new_work=new_work)
        record = self._record_of(step_id, trigger)
        STEP_LIFECYCLE.next_state(record["status"], trigger, step_id)
        return record

    def _transition(self, trigger: str, at: datetime, step_id: str | None = None) -> None:
        """Check the execution's lifecycle, and that ``step_id`` (if any) exists."""
        aware(at)
        EXECUTION_LIFECYCLE.next_state(self._status, trigger, self._execution_id)
        if step_id is not None:
            self._record_of(step_id, trigger)

    def _append(self, event_class: type[ExecutionEvent], at: datetime, **fields: Any) -> None:
        """Link the event into the hash chain and trigger it at ``at``.

        With a guard attached, its payloads are sealed first (the hash covers them
        sealed).
        """
        payload_guard = guard_of(self)
        if payload_guard is not None:
            sealed = seal_payloads(payload_guard, event_class, fields)
            fields.update(sealed)
        linked = chained(
            event_class.__name__,
            fields,
            prev_hash=self._chain_head,
            originator_id=str(self.id),
            version=self.version + 1,
            timestamp=at,
        )
        self.trigger_event(event_class, timestamp=at, **linked)


@lru_cache(maxsize=256)
def _compensable_ids(definition_json: str) -> frozenset[str]:
    steps = json.loads(definition_json)["steps"]
    return frozenset(step["id"] for step in steps if step["compensate"])


@lru_cache(maxsize=256)
def trigger_ids(definition_json: str) -> frozenset[str]:
    """Ids of the trigger steps of a canonical definition (their output is the input)."""
    steps = json.loads(definition_json)["steps"]
    return frozenset(step["id"] for step in steps if step["type"] == "trigger")
