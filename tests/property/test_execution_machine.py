"""Random command sequences against the Execution aggregate (DESIGN.md invariants 1, 5, 6).

Every command, with known and unknown step ids and payloads full of the store's marker
keys, is tried in whatever state the execution is in; a guided rule also picks moves the
lifecycle allows, so runs reach deep states. Illegal commands must raise
InvalidTransitionError (or OperatorActionError) and change nothing; a terminal execution
must never change, except that an operator's retry or skip reopens a FAILED one and
data-protection annotations (erasure, legal hold, purge) leave its status and steps as
they were; and after every step the recorded events must replay, snapshot and verify,
and any forged field must break the chain.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from flowledger.domain.chain import link_of, verify_chain
from flowledger.domain.definition.model import WorkflowDefinition
from flowledger.domain.execution import Execution
from flowledger.domain.lifecycles import STEP_LIFECYCLE
from flowledger.errors import InvalidTransitionError, OperatorActionError
from tests.domain.factories import T0, definition, step

KNOWN = ("a", "b", "c", "_type_", "_data_")
STEP_IDS = st.sampled_from((*KNOWN, "zz"))
MAYBE_STEP = st.none() | STEP_IDS
KEYS = st.sampled_from(["_type_", "_data_", "k", "é"]) | st.text(max_size=3)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)
MARKERS = st.fixed_dictionaries({"_type_": VALUES, "_data_": VALUES})
OBJECTS = MARKERS | st.dictionaries(KEYS, VALUES, max_size=3)
PAYLOADS = OBJECTS | VALUES
TEXT = st.text(max_size=6)
ACTORS = st.none() | TEXT
ERRORS = st.fixed_dictionaries(
    {"type": st.sampled_from(["ValueError", "_type_"]), "message": TEXT, "retryable": st.booleans()}
)
NUMBERS = st.floats(0, 1e6, allow_nan=False)

Command = Callable[[datetime], object]
REOPENING = {"ExecutionRetried", "StepSkippedByOperator"}
ANNOTATIONS = {"SubjectForgotten", "LegalHoldPlaced", "LegalHoldReleased", "ExecutionPurged"}
PROTECTION = ("assign_keys", "forget", "hold", "release", "purge")
STEP_TRIGGERS = sorted(STEP_LIFECYCLE.triggers())
ONGOING = ("provide_input", "pause", "resume", "request_cancel", "record_condition")
# How much more often the guided rule picks the moves that make progress.
PROGRESS = {"start": 4, "restart": 3, "complete": 4, "compensate": 4, "roll_back": 3}
# Rollback is the deepest path: start it more often than the other endings.
ENDINGS = (
    "complete",
    "fail",
    "cancel",
    *["start_rollback"] * 3,
    "finish_rollback",
    "fail_rollback",
)


def step_command(x: Execution, trigger: str, s: str, draw: st.DrawFn) -> Command:
    """The command that fires ``trigger`` on step ``s``, with drawn arguments."""
    match trigger:
        case "start" | "restart":
            parameters = draw(OBJECTS)
            return lambda at: x.start_step(s, parameters, at)
        case "complete":
            output, duration = draw(PAYLOADS), draw(NUMBERS)
            return lambda at: x.complete_step(s, output, duration, at)
        case "fail":
            error, retryable, duration = draw(ERRORS), draw(st.booleans()), draw(NUMBERS)
            return lambda at: x.fail_step(s, error, retryable, duration, at)
        case "time_out":
            timeout = draw(NUMBERS)
            return lambda at: x.time_out_step(s, timeout, at)
        case "schedule_retry":
            wait = timedelta(seconds=draw(st.integers(0, 100)))
            return lambda at: x.schedule_retry(s, at + wait, at)
        case "skip" | "cancel" | "pause":
            text = draw(TEXT)
            command = {"skip": x.skip_step, "cancel": x.cancel_step, "pause": x.pause_step}
            return lambda at: command[trigger](s, text, at)
        case "interrupt":
            return lambda at: x.interrupt_step(s, at)
        case "operator_skip":
            actor, reason, output = draw(ACTORS), draw(ACTORS), draw(PAYLOADS)
            return lambda at: x.skip_by_operator(s, actor, reason, at, output)  # type: ignore[arg-type]
        case "operator_retry" | "reopen":  # an execution command: retry from the failure
            actor, reason = draw(ACTORS), draw(ACTORS)
            return lambda at: x.retry_from_failure(actor, reason, at)  # type: ignore[arg-type]
        case "compensate":
            return lambda at: x.start_compensation(s, at)
        case "roll_back":
            output = draw(PAYLOADS)
            return lambda at: x.roll_back_step(s, output, at)
        case _:
            assert trigger == "fail_compensation"
            error = draw(ERRORS)
            return lambda at: x.fail_compensation(s, error, at)


def execution_command(x: Execution, name: str, draw: st.DrawFn) -> Command:
    """The execution command ``name``, with drawn arguments."""
    text, actor, step_id = draw(TEXT), draw(ACTORS), draw(MAYBE_STEP)
    match name:
        case "provide_input":
            inputs = draw(OBJECTS)
            return lambda at: x.provide_input(inputs, actor, at)
        case "pause":
            missing = draw(ACTORS)
            return lambda at: x.pause(text, at, step_id, missing, actor)
        case "resume":
            return lambda at: x.resume(actor, at)
        case "request_cancel":
            rollback = draw(st.booleans())
            return lambda at: x.request_cancel(text, actor, at, rollback)
        case "record_condition":
            guarded, condition, value = draw(STEP_IDS), draw(ACTORS), draw(st.booleans())
            return lambda at: x.record_condition(step_id, guarded, condition, value, at)
        case "complete":
            outputs = draw(PAYLOADS)
            return lambda at: x.complete(outputs, at)
        case "fail" | "fail_rollback":
            error = draw(ERRORS)
            command = x.fail if name == "fail" else x.fail_rollback
            return lambda at: command(step_id, error, at)
        case "start_rollback":
            return lambda at: x.start_rollback(text, at)
        case "cancel":
            return x.cancel
        case _:
            assert name == "finish_rollback"
            return x.finish_rollback


@st.composite
def definitions(draw: st.DrawFn) -> WorkflowDefinition:
    """Every known step, in a random order, some after the one before, some compensable."""
    ids = draw(st.permutations(KNOWN))
    steps = []
    for index, step_id in enumerate(ids):
        after = ids[index - 1] if index and draw(st.booleans()) else None
        steps.append(step(step_id, after=after, compensate=draw(st.booleans())))
    return definition(*steps)


def transcoded_snapshot(execution: Execution) -> Execution:
    """Snapshot.take, through the store's JSON transcoder, then Snapshot.mutate."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    taken = Snapshot.take(execution)
    state = transcoder.decode(transcoder.encode(taken.state))
    rebuilt = replace(taken, state=state).mutate(None)
    assert isinstance(rebuilt, Execution)
    return rebuilt


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, dict):
        return {**value, "forged": True}
    return "forged"


class ExecutionMachine(RuleBasedStateMachine):
    execution: Execution
    events: list[Any]
    seconds: int
    patience: int

    @initialize(wf=definitions(), input_data=OBJECTS, patience=st.integers(0, 60))
    def start(self, wf: WorkflowDefinition, input_data: dict[str, Any], patience: int) -> None:
        self.execution = Execution.start("ex", wf, input_data, T0)
        self.events = list(self.execution.collect_events())
        self.seconds = 0
        # Commands that end the execution (or start its rollback) wait this many steps,
        # so that some runs end early and others reach deep states first.
        self.patience = patience

    def attempt(self, command: Command) -> None:
        """Run a command; refused or not, check what it did to the execution."""
        execution = self.execution
        before = (copy.deepcopy(vars(execution)), execution.state())
        was_terminal = execution.is_terminal
        self.seconds += 1
        try:
            command(T0 + timedelta(seconds=self.seconds))
        except (InvalidTransitionError, OperatorActionError):
            assert (copy.deepcopy(vars(execution)), execution.state()) == before
            return
        new = list(execution.collect_events())
        assert len(new) == 1 and new[0].originator_version == before[1].version + 1
        if was_terminal:
            kind = type(new[0]).__name__
            if kind in REOPENING:
                assert before[1].status == "FAILED", "only a FAILED execution reopens"
            else:
                assert kind in ANNOTATIONS, f"a terminal execution changed by {kind}"
                after = execution.state()
                assert (after.status, after.steps) == (before[1].status, before[1].steps)
        self.events.extend(new)

    @rule(trigger=st.sampled_from(STEP_TRIGGERS), step_id=STEP_IDS, data=st.data())
    def any_step_command(self, trigger: str, step_id: str, data: st.DataObject) -> None:
        self.attempt(step_command(self.execution, trigger, step_id, data.draw))

    @rule(moves=st.integers(1, 6), data=st.data())
    def step_moves_their_lifecycle_allows(self, moves: int, data: st.DataObject) -> None:
        if self.execution.status == "PAUSED" and data.draw(st.booleans()):
            self.attempt(execution_command(self.execution, "resume", data.draw))
        for _ in range(moves):
            step_id = data.draw(st.sampled_from(KNOWN))
            status = self.execution.state().steps[step_id].status
            allowed = sorted(t for s, t in STEP_LIFECYCLE.table if s == status) or STEP_TRIGGERS
            weighted = [t for t in allowed for _ in range(PROGRESS.get(t, 1))]
            trigger = data.draw(st.sampled_from(weighted))
            self.attempt(step_command(self.execution, trigger, step_id, data.draw))

    @rule(name=st.sampled_from(ONGOING), data=st.data())
    def an_ongoing_execution_command(self, name: str, data: st.DataObject) -> None:
        self.attempt(execution_command(self.execution, name, data.draw))

    @rule(name=st.sampled_from(PROTECTION), data=st.data())
    def a_data_protection_command(self, name: str, data: st.DataObject) -> None:
        x, actor, reason = self.execution, data.draw(ACTORS), data.draw(ACTORS)
        commands: dict[str, Command] = {
            "assign_keys": lambda at: x.assign_keys(data.draw(ACTORS), data.draw(ACTORS), at),
            "forget": lambda at: x.record_forgotten(actor, reason, at),  # type: ignore[arg-type]
            "hold": lambda at: x.place_legal_hold(actor, reason, at),  # type: ignore[arg-type]
            "release": lambda at: x.release_legal_hold(actor, reason, at),  # type: ignore[arg-type]
            "purge": lambda at: x.record_purge(actor, reason, {"events": x.version}, at),  # type: ignore[arg-type]
        }
        self.attempt(commands[name])

    @precondition(lambda self: self.seconds >= self.patience)
    @rule(name=st.sampled_from(ENDINGS), data=st.data())
    def an_ending_execution_command(self, name: str, data: st.DataObject) -> None:
        if name == "cancel":  # which needs a request first
            self.attempt(execution_command(self.execution, "request_cancel", data.draw))
        self.attempt(execution_command(self.execution, name, data.draw))

    @rule(data=st.data())
    def naive_times_are_refused(self, data: st.DataObject) -> None:
        trigger = data.draw(st.sampled_from(STEP_TRIGGERS))
        command = step_command(self.execution, trigger, data.draw(STEP_IDS), data.draw)
        before = copy.deepcopy(vars(self.execution))
        try:
            command(datetime(2024, 1, 1))  # naive on purpose
        except (ValueError, InvalidTransitionError, OperatorActionError):
            pass
        else:
            raise AssertionError("a naive time was accepted")
        assert vars(self.execution) == before

    @rule(data=st.data())
    def forging_one_field_of_one_event_is_detected(self, data: st.DataObject) -> None:
        links = [link_of(event) for event in self.events]
        index = data.draw(st.integers(0, len(links) - 1))
        link = links[index]
        parts = ["version", "type_name", "originator_id", "timestamp", "hash", "prev_hash"]
        part = data.draw(st.sampled_from(parts + [f"data.{name}" for name in link.data]))
        if part.startswith("data."):
            name = part.removeprefix("data.")
            forged = replace(link, data={**link.data, name: changed(link.data[name])})
        else:
            forged = replace(link, **{part: changed(getattr(link, part))})
        report = verify_chain([*links[:index], forged, *links[index + 1 :]])
        assert (report.ok, report.broken_at) == (False, link.version)

    @invariant()
    def replay_rebuilds_an_equal_aggregate(self) -> None:
        rebuilt = None
        for event in self.events:
            rebuilt = event.mutate(rebuilt)
        assert isinstance(rebuilt, Execution)
        assert rebuilt == self.execution
        assert rebuilt.state() == self.execution.state()

    @invariant()
    def a_transcoded_snapshot_equals_the_replay(self) -> None:
        snapshot = transcoded_snapshot(self.execution)
        assert snapshot == self.execution
        assert snapshot.state() == self.execution.state()

    @invariant()
    def the_chain_verifies(self) -> None:
        report = verify_chain((link_of(event) for event in self.events), self.execution.chain_head)
        assert report.ok and report.checked == self.execution.version


# At least 120 runs of up to 50 commands even in the quick profile; the profile's count
# (thorough: 5,000) when it asks for more.
ExecutionMachine.TestCase.settings = settings(
    max_examples=max(120, settings.default.max_examples),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestExecutionMachine = ExecutionMachine.TestCase
