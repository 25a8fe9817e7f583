from __future__ import annotations

import itertools

import pytest

from flowledger.domain import events as ev
from flowledger.domain import lifecycles
from flowledger.domain.lifecycles import (
    EXECUTION_LIFECYCLE,
    STEP_LIFECYCLE,
    Lifecycle,
    compile_lifecycle,
)
from flowledger.domain.operator_events import StepSkippedByOperator
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.errors import InvalidTransitionError

STEP_TRANSITIONS = [
    ("PENDING", "start", "RUNNING"),
    ("PENDING", "skip", "SKIPPED"),
    ("PENDING", "cancel", "CANCELLED"),
    ("PENDING", "pause", "PAUSED"),
    ("RUNNING", "complete", "COMPLETED"),
    ("RUNNING", "fail", "FAILED"),
    ("RUNNING", "time_out", "FAILED"),
    ("RUNNING", "pause", "PAUSED"),
    ("RUNNING", "cancel", "CANCELLED"),
    ("RUNNING", "interrupt", "RUNNING"),
    ("RUNNING", "restart", "RUNNING"),
    ("FAILED", "start", "RUNNING"),
    ("FAILED", "schedule_retry", "FAILED"),
    ("FAILED", "cancel", "CANCELLED"),
    ("PAUSED", "start", "RUNNING"),
    ("PAUSED", "cancel", "CANCELLED"),
    ("COMPLETED", "compensate", "COMPENSATING"),
    ("COMPENSATING", "roll_back", "ROLLED_BACK"),
    ("COMPENSATING", "fail_compensation", "COMPENSATION_FAILED"),
    ("PENDING", "operator_skip", "SKIPPED"),
    ("PAUSED", "operator_skip", "SKIPPED"),
    ("FAILED", "operator_skip", "SKIPPED"),
    ("FAILED", "operator_retry", "FAILED"),
    ("CANCELLED", "reopen", "PENDING"),
]

EXECUTION_TRANSITIONS = [
    ("PENDING", "start", "RUNNING"),
    ("RUNNING", "complete", "COMPLETED"),
    ("RUNNING", "fail", "FAILED"),
    ("RUNNING", "pause", "PAUSED"),
    ("RUNNING", "cancel", "CANCELLED"),
    ("RUNNING", "start_rollback", "ROLLING_BACK"),
    ("PAUSED", "resume", "RUNNING"),
    ("PAUSED", "cancel", "CANCELLED"),
    ("PAUSED", "start_rollback", "ROLLING_BACK"),
    ("ROLLING_BACK", "finish_rollback", "ROLLED_BACK"),
    ("ROLLING_BACK", "fail_rollback", "ROLLBACK_FAILED"),
    ("FAILED", "reopen", "RUNNING"),
]


@pytest.mark.parametrize(("source", "trigger", "dest"), STEP_TRANSITIONS)
def test_every_step_transition_is_allowed(source: str, trigger: str, dest: str) -> None:
    assert STEP_LIFECYCLE.allows(source, trigger)
    assert STEP_LIFECYCLE.next_state(source, trigger) == dest


@pytest.mark.parametrize(("source", "trigger", "dest"), EXECUTION_TRANSITIONS)
def test_every_execution_transition_is_allowed(source: str, trigger: str, dest: str) -> None:
    assert EXECUTION_LIFECYCLE.next_state(source, trigger) == dest


def test_tables_hold_exactly_the_listed_transitions() -> None:
    assert dict(STEP_LIFECYCLE.table) == {(s, t): d for s, t, d in STEP_TRANSITIONS}
    assert dict(EXECUTION_LIFECYCLE.table) == {(s, t): d for s, t, d in EXECUTION_TRANSITIONS}


@pytest.mark.parametrize(
    ("lifecycle", "state", "trigger"),
    [
        (STEP_LIFECYCLE, "PENDING", "complete"),
        (STEP_LIFECYCLE, "RUNNING", "start"),
        (STEP_LIFECYCLE, "COMPLETED", "start"),
        (STEP_LIFECYCLE, "FAILED", "complete"),
        (STEP_LIFECYCLE, "RUNNING", "compensate"),
        (STEP_LIFECYCLE, "PAUSED", "complete"),
        (STEP_LIFECYCLE, "SKIPPED", "start"),
        (EXECUTION_LIFECYCLE, "RUNNING", "resume"),
        (EXECUTION_LIFECYCLE, "PAUSED", "complete"),
        (EXECUTION_LIFECYCLE, "RUNNING", "finish_rollback"),
        (EXECUTION_LIFECYCLE, "ROLLING_BACK", "cancel"),
        (EXECUTION_LIFECYCLE, "PENDING", "complete"),
    ],
)
def test_illegal_transitions_are_refused(lifecycle: Lifecycle, state: str, trigger: str) -> None:
    assert not lifecycle.allows(state, trigger)
    with pytest.raises(InvalidTransitionError) as raised:
        lifecycle.next_state(state, trigger, "x-1")
    error = raised.value
    assert (error.entity, error.state, error.trigger, error.subject) == (
        lifecycle.name,
        state,
        trigger,
        "x-1",
    )
    assert f"cannot {trigger} {lifecycle.name} 'x-1' in state {state}" == str(error)


def test_terminal_execution_states_absorb_every_trigger() -> None:
    terminal = {s for s in ExecutionStatus if s.is_terminal}
    assert terminal == EXECUTION_LIFECYCLE.terminal
    engine_triggers = EXECUTION_LIFECYCLE.triggers() - EXECUTION_LIFECYCLE.reopening
    for state, trigger in itertools.product(terminal, engine_triggers):
        with pytest.raises(InvalidTransitionError):
            EXECUTION_LIFECYCLE.next_state(state, trigger)


def test_only_an_operator_reopens_a_terminal_state_and_only_a_failed_execution() -> None:
    assert EXECUTION_LIFECYCLE.reopening == STEP_LIFECYCLE.reopening == {"reopen"}
    reopened = {
        state
        for state in EXECUTION_LIFECYCLE.terminal
        if EXECUTION_LIFECYCLE.allows(state, "reopen")
    }
    assert reopened == {"FAILED"}
    assert {s for s in STEP_LIFECYCLE.terminal if STEP_LIFECYCLE.allows(s, "reopen")} == {
        "CANCELLED"
    }


def test_terminal_step_states_absorb_every_trigger() -> None:
    assert STEP_LIFECYCLE.terminal == {"SKIPPED", "CANCELLED", "ROLLED_BACK", "COMPENSATION_FAILED"}
    engine_triggers = STEP_LIFECYCLE.triggers() - STEP_LIFECYCLE.reopening
    for state, trigger in itertools.product(STEP_LIFECYCLE.terminal, engine_triggers):
        assert not STEP_LIFECYCLE.allows(state, trigger)


def test_states_and_initial_state_are_the_statuses() -> None:
    assert STEP_LIFECYCLE.states == tuple(StepStatus)
    assert EXECUTION_LIFECYCLE.states == tuple(ExecutionStatus)
    assert STEP_LIFECYCLE.initial == EXECUTION_LIFECYCLE.initial == "PENDING"


def test_tables_hold_plain_strings() -> None:
    # The aggregate stores states as plain str so snapshots transcode them unchanged.
    for table in (STEP_LIFECYCLE.table, EXECUTION_LIFECYCLE.table):
        for (state, trigger), dest in table.items():
            assert {type(state), type(trigger), type(dest)} == {str}


def test_tables_are_immutable() -> None:
    with pytest.raises(TypeError):
        STEP_LIFECYCLE.table[("SKIPPED", "start")] = "RUNNING"  # type: ignore[index]
    with pytest.raises(AttributeError):
        EXECUTION_LIFECYCLE.table = {}  # type: ignore[misc]
    assert not STEP_LIFECYCLE.allows("SKIPPED", "start")


def test_no_machine_is_kept_or_built_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not any(
        type(value).__module__.startswith("transitions") for value in vars(lifecycles).values()
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Machine was built after import")

    monkeypatch.setattr(lifecycles, "Machine", refuse)
    assert STEP_LIFECYCLE.next_state("PENDING", "start") == "RUNNING"
    assert EXECUTION_LIFECYCLE.allows("RUNNING", "pause")


def test_compiling_refuses_a_trigger_with_two_destinations() -> None:
    with pytest.raises(ValueError, match="two states"):
        compile_lifecycle(
            "door",
            ["open", "shut", "gone"],
            [
                ("push", "open", "shut"),
                ("push", "open", "gone"),
            ],
            initial="open",
        )


def test_compiled_lifecycle_finds_terminal_states() -> None:
    door = compile_lifecycle("door", ["open", "shut"], [("push", "open", "shut")], initial="open")
    assert door.terminal == {"shut"}
    assert door.next_state("open", "push") == "shut"
    with pytest.raises(InvalidTransitionError):
        door.next_state("shut", "push")


def test_compiling_refuses_unknown_states() -> None:
    with pytest.raises(ValueError, match="unknown states"):
        compile_lifecycle("door", ["open"], [("push", "open", "gone")], initial="open")


STEP_EVENTS = {
    "start": ev.StepStarted,
    "restart": ev.StepStarted,
    "complete": ev.StepCompleted,
    "fail": ev.StepFailed,
    "time_out": ev.StepTimedOut,
    "schedule_retry": ev.StepRetryScheduled,
    "skip": ev.StepSkipped,
    "pause": ev.StepPaused,
    "interrupt": ev.StepInterrupted,
    "cancel": ev.StepCancelled,
    "compensate": ev.CompensationStarted,
    "roll_back": ev.StepRolledBack,
    "fail_compensation": ev.CompensationFailed,
    "operator_skip": StepSkippedByOperator,
}
EXECUTION_EVENTS = {
    "complete": ev.ExecutionCompleted,
    "fail": ev.ExecutionFailed,
    "pause": ev.ExecutionPaused,
    "resume": ev.ExecutionResumed,
    "cancel": ev.ExecutionCancelled,
    "start_rollback": ev.RollbackStarted,
    "finish_rollback": ev.ExecutionRolledBack,
    "fail_rollback": ev.RollbackFailed,
}


# Applied by ExecutionRetried (an execution event) to the steps it reopens or retries.
REOPENING_STEP_TRIGGERS = {"operator_retry", "reopen"}


def test_each_event_leads_where_the_table_says_its_trigger_does() -> None:
    assert set(STEP_EVENTS) | REOPENING_STEP_TRIGGERS == STEP_LIFECYCLE.triggers()
    assert set(EXECUTION_EVENTS) | {"start", "reopen"} == EXECUTION_LIFECYCLE.triggers()
    for (_, trigger), dest in STEP_LIFECYCLE.table.items():
        if trigger not in REOPENING_STEP_TRIGGERS:
            assert dest == STEP_EVENTS[trigger].STATUS, trigger
    for (_, trigger), dest in EXECUTION_LIFECYCLE.table.items():
        if trigger not in {"start", "reopen"}:  # ExecutionStarted; retry or skip
            assert dest == EXECUTION_EVENTS[trigger].STATUS, trigger
