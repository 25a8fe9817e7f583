"""The audit timeline: one short line per recorded event, for real histories."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from flowledger import ExecutionStatus, HistoryEntry, WorkflowEngine
from flowledger.domain.event_catalogue import EVENT_CLASSES
from flowledger.domain.execution import Execution
from flowledger.domain.history import history_entry
from flowledger.projections.timeline import (
    DESCRIBED_TYPES,
    TimelineLine,
    audit_timeline,
    brief,
    describe,
    format_duration,
    one_line,
    timeline_line,
)
from tests.domain.factories import at, chain_definition, error
from tests.unit.conftest import WAIT, Gate, graph, node, step, workflow

GENERIC = "(unrecognised event)"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[WorkflowEngine]:
    """A started engine on a SQLite file of the test's own."""
    made = WorkflowEngine(store=f"sqlite:///{tmp_path}/ledger.db")
    async with made:
        yield made
    made.close()


def texts(engine: WorkflowEngine, execution_id: str) -> list[str]:
    return [line.text for line in audit_timeline(engine.ledger.history(execution_id))]


def lines_of(engine: WorkflowEngine, execution_id: str, kind: str) -> list[TimelineLine]:
    timeline = audit_timeline(engine.ledger.history(execution_id))
    return [line for line in timeline if line.type == kind]


# -- histories recorded by the engine -------------------------------------------------


async def test_retries_show_each_attempt_its_error_and_the_retry_time(
    engine: WorkflowEngine,
) -> None:
    calls: list[int] = []

    @engine.action("flaky")
    async def flaky() -> dict[str, int]:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"try {len(calls)} refused")
        return {"tries": len(calls)}

    retry = {"max_attempts": 3, "initial_interval": 0.01, "jitter": 0}
    state = await engine.run_workflow(workflow(step("pay", "flaky", retry=retry)), timeout=WAIT)

    assert state.status is ExecutionStatus.COMPLETED
    step_texts = [line for line in texts(engine, state.execution_id) if "step pay" in line]
    assert step_texts[0] == "step pay attempt 1 started (parameters: none)"
    assert step_texts[1].startswith("step pay attempt 1 failed after ")
    assert step_texts[1].endswith(": RuntimeError: try 1 refused (retryable)")
    history = engine.ledger.history(state.execution_id)
    retry_entry = next(entry for entry in history if entry.type == "StepRetryScheduled")
    not_before = retry_entry.data["not_before"].isoformat(timespec="milliseconds")
    assert step_texts[2] == f"step pay attempt 2 scheduled not before {not_before}"
    assert step_texts[-1].startswith("step pay attempt 3 completed in ")
    assert step_texts[-1].endswith("ms")


async def test_graph_conditions_show_the_edge_the_expression_and_the_branch(
    engine: WorkflowEngine,
) -> None:
    definition = graph(
        [{"id": "submitted", "type": "trigger"}, node("small"), node("large")],
        [
            {"source": "submitted", "target": "small", "condition": "input.amount <= 100"},
            {"source": "submitted", "target": "large", "condition": "input.amount > 100"},
        ],
    )
    state = await engine.run_workflow(definition, {"amount": 250}, timeout=WAIT)

    conditions = lines_of(engine, state.execution_id, "ConditionEvaluated")
    assert sorted(line.text for line in conditions) == [
        "submitted -> large: condition `input.amount > 100` was true, branch taken",
        "submitted -> small: condition `input.amount <= 100` was false, branch not taken",
    ]
    assert {line.step_id for line in conditions} == {"small", "large"}
    (skipped,) = lines_of(engine, state.execution_id, "StepSkipped")
    assert skipped.text == "step small skipped: branch_not_taken"
    assert skipped.reason == "branch_not_taken"


async def test_a_rollback_shows_the_failure_and_each_compensation(engine: WorkflowEngine) -> None:
    engine.action("undo")(lambda id: {"undone": id})
    compensable = {"action": "undo", "parameters": {"id": "${reserve.output.id}"}}
    state = await engine.run_workflow(
        workflow(
            step("reserve", parameters={"id": "r-1"}, compensate=compensable),
            step("charge", "fail", parameters={"message": "card declined", "retryable": False}),
        ),
        timeout=WAIT,
    )

    assert state.status is ExecutionStatus.ROLLED_BACK
    timeline = texts(engine, state.execution_id)
    assert any(
        text.startswith("rollback started after step charge failed (") and "card declined" in text
        for text in timeline
    )
    assert "step reserve compensation started" in timeline
    assert 'step reserve rolled back (compensation returned {"undone":"r-1"})' in timeline
    assert timeline[-1] == "execution rolled back: every compensation finished"


async def test_pause_and_resume_show_the_missing_variable_and_who_provided_it(
    engine: WorkflowEngine,
) -> None:
    definition = workflow(step("first"), step("needs", parameters={"x": "${input.x}"}))
    execution_id = await engine.start_workflow(definition, {"secret": "s3cr3t"})
    paused = await engine.wait_for(execution_id, timeout=WAIT)
    assert paused.status is ExecutionStatus.PAUSED

    await engine.resume_workflow(execution_id, inputs={"x": 7, "note": "hidden"}, actor="bob")
    done = await engine.wait_for(execution_id, timeout=WAIT)
    assert done.status is ExecutionStatus.COMPLETED

    timeline = texts(engine, execution_id)
    assert timeline[0].startswith(f"execution {execution_id} of workflow wf started (definition ")
    assert timeline[0].endswith("; input: secret)")
    assert "step needs paused, waiting for input.x" in timeline
    (pause,) = lines_of(engine, execution_id, "ExecutionPaused")
    assert pause.text.startswith("execution paused at step needs, waiting for input.x")
    (provided,) = lines_of(engine, execution_id, "InputProvided")
    assert provided.text == "input provided by bob: note, x"
    assert provided.actor == "bob"
    (resumed,) = lines_of(engine, execution_id, "ExecutionResumed")
    assert resumed.text == "execution resumed by bob"
    assert all("s3cr3t" not in text and "hidden" not in text for text in timeline)


async def test_a_cancel_shows_who_asked_and_why(engine: WorkflowEngine) -> None:
    gate = Gate()
    engine.action("held")(gate)
    execution_id = await engine.start_workflow(workflow(step("held", "held"), step("later")))
    await gate.reached()
    await engine.cancel_workflow(execution_id, reason="customer asked", actor="ann")
    gate.open()
    await engine.wait_for(execution_id, timeout=WAIT)

    (request,) = lines_of(engine, execution_id, "CancelRequested")
    assert request.text == "cancel requested by ann: customer asked"
    assert (request.actor, request.reason) == ("ann", "customer asked")
    (cancelled,) = lines_of(engine, execution_id, "StepCancelled")
    assert cancelled.step_id == "later"
    assert cancelled.text.startswith("step later cancelled")
    assert texts(engine, execution_id)[-1] == "execution cancelled"


async def test_a_timeout_shows_the_limit(engine: WorkflowEngine) -> None:
    slow = step("slow", "sleep", parameters={"seconds": 5}, timeout=0.05, retry={"max_attempts": 1})
    state = await engine.run_workflow(workflow(slow), timeout=WAIT)

    assert state.status is ExecutionStatus.FAILED
    (timed_out,) = lines_of(engine, state.execution_id, "StepTimedOut")
    assert timed_out.text == "step slow attempt 1 timed out after 0.05 s"
    assert texts(engine, state.execution_id)[-1].startswith("execution failed at step slow: ")


# -- every event type -----------------------------------------------------------------


def recorded(execution: Execution) -> list[HistoryEntry]:
    return [history_entry(event, "ex") for event in execution.collect_events()]


def retried_and_failed(execution_id: str = "ex") -> Execution:
    """Guarded, timed out, retried, interrupted, completed, branch skipped, failed (14 events)."""
    execution = Execution.start(execution_id, chain_definition("a", "b", "c"), {"k": 1}, at(0))
    execution.record_condition(None, "a", None, True, at(1))
    execution.start_step("a", {"p": 1}, at(2))
    execution.time_out_step("a", 2.5, at(3))
    execution.schedule_retry("a", at(4), at(3))
    execution.start_step("a", {"p": 1}, at(4))
    execution.interrupt_step("a", at(5))
    execution.start_step("a", {"p": 1}, at(6))
    execution.complete_step("a", {"ok": False}, 1234.5, at(7))
    execution.record_condition("a", "b", "output.ok", False, at(8))
    execution.skip_step("b", "branch_not_taken", at(8))
    execution.start_step("c", {}, at(9))
    execution.fail_step("c", error("KeyError", "no such key", False), False, 3.25, at(10))
    execution.fail("c", error("KeyError", "no such key", False), at(11))
    return execution


def paused_resumed_and_cancelled(execution_id: str = "ex") -> Execution:
    """Paused for input, resumed by bob, cancelled by ann (11 events)."""
    execution = Execution.start(execution_id, chain_definition("a", "b"), {}, at(0))
    execution.start_step("a", {}, at(1))
    execution.pause_step("a", "input.x", at(2))
    execution.pause("missing_input", at(2), step_id="a", missing_var="input.x")
    execution.provide_input({"x": 1}, "bob", at(3))
    execution.resume("bob", at(3))
    execution.start_step("a", {"x": 1}, at(4))
    execution.complete_step("a", {}, 2, at(5))
    execution.request_cancel("customer asked", "ann", at(6), rollback=True)
    execution.cancel_step("b", "cancelled", at(6))
    execution.cancel(at(7))
    return execution


def rolled_back(*, compensation_fails: bool, execution_id: str = "ex") -> Execution:
    """Step c fails; b and a are compensated, a's compensation failing if asked."""
    definition = chain_definition("a", "b", "c", compensate=("a", "b"))
    execution = Execution.start(execution_id, definition, {}, at(0))
    for second, step_id in enumerate(("a", "b"), start=1):
        execution.start_step(step_id, {}, at(second))
        execution.complete_step(step_id, {"id": step_id}, 1, at(second))
    execution.start_step("c", {}, at(3))
    failure = error("ValueError", "declined", False)
    execution.fail_step("c", failure, False, 1, at(4))
    execution.start_rollback("step_failed", at(5), step_id="c", error=failure)
    execution.start_compensation("b", at(6))
    execution.roll_back_step("b", {"undone": "b"}, at(7))
    execution.start_compensation("a", at(8))
    if compensation_fails:
        execution.fail_compensation("a", error("IOError", "undo refused"), at(9))
        execution.fail_rollback("a", error("IOError", "undo refused"), at(10))
    else:
        execution.roll_back_step("a", None, at(9))
        execution.finish_rollback(at(10))
    return execution


def completed(execution_id: str = "ex") -> Execution:
    """Paused and resumed on request, claimed, taken over, handed back, then completed."""
    execution = Execution.start(execution_id, chain_definition("a"), {}, at(0))
    execution.pause("operator", at(1), actor="carol")
    execution.resume(None, at(2))
    execution.claim("worker-1", at(2))
    execution.take_over("worker-2", "worker-1", at(2))
    execution.release("worker-2", "shutting down", at(2))
    execution.claim("worker-3", at(2))
    execution.start_step("a", {}, at(3))
    execution.complete_step("a", [1, 2], 0.5, at(4))
    execution.complete({"a": [1, 2]}, at(5))
    return execution


def reopened_by_operators(execution_id: str = "reopened") -> Execution:
    """Failed, then retried and skipped by operators (who and why recorded)."""
    execution = Execution.start(execution_id, chain_definition("a", "b"), {}, at(0))
    execution.start_step("a", {}, at(1))
    execution.fail_step("a", error("IOError", "down", False), False, 1.0, at(2))
    execution.fail("a", error("IOError", "down", False), at(3))
    execution.retry_from_failure("ann", "service is back", at(4))
    execution.start_step("a", {}, at(5))
    execution.fail_step("a", error("IOError", "down", False), False, 1.0, at(6))
    execution.fail("a", error("IOError", "down", False), at(7))
    execution.skip_by_operator("a", "bob", "done by hand", at(8), output={"id": 7})
    return execution


def protected_forgotten_held_and_purged(execution_id: str = "protected") -> Execution:
    """Keys assigned, completed, subject forgotten, held, released, purged."""
    execution = Execution.start(execution_id, chain_definition("a"), {}, at(0))
    execution.assign_keys("subject:k1", "execution:k2", at(0))
    execution.start_step("a", {}, at(1))
    execution.complete_step("a", {}, 1.0, at(2))
    execution.complete({}, at(3))
    execution.record_forgotten("dpo", "request 12", at(4))
    execution.place_legal_hold("counsel", "case 9", at(5))
    execution.release_legal_hold("counsel", "case closed", at(6))
    execution.record_purge("ops", "retention", {"events": 8}, at(7))
    return execution


def every_event_type() -> list[Execution]:
    """New executions that, together, record every type of event."""
    return [
        protected_forgotten_held_and_purged(),
        reopened_by_operators(),
        retried_and_failed("retried"),
        paused_resumed_and_cancelled("cancelled"),
        rolled_back(compensation_fails=True, execution_id="rollback-failed"),
        rolled_back(compensation_fails=False, execution_id="rolled-back"),
        completed("completed"),
    ]


def history_with_retries_and_a_failure() -> list[HistoryEntry]:
    return recorded(retried_and_failed())


def history_paused_resumed_and_cancelled() -> list[HistoryEntry]:
    return recorded(paused_resumed_and_cancelled())


def history_rolled_back(*, compensation_fails: bool) -> list[HistoryEntry]:
    return recorded(rolled_back(compensation_fails=compensation_fails))


def history_completed() -> list[HistoryEntry]:
    return recorded(completed())


ALL_HISTORIES = [recorded(execution) for execution in every_event_type()]


def test_every_recordable_event_type_has_a_line_of_its_own() -> None:
    everything = [entry for history in ALL_HISTORIES for entry in history]
    covered = {entry.type for entry in everything}

    assert covered == set(EVENT_CLASSES)  # these histories hold every event type
    assert set(EVENT_CLASSES) <= DESCRIBED_TYPES
    for line in audit_timeline(everything):
        assert GENERIC not in line.text, line
        assert line.text and "\n" not in line.text
        assert len(line.text) <= 200


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("StepTimedOut", "step a attempt 1 timed out after 2.5 s"),
        (
            "StepInterrupted",
            "step a attempt 2 interrupted (found running after a restart), to run again",
        ),
        ("StepCompleted", "step a attempt 2 completed in 1.23 s"),
        (
            "StepFailed",
            "step c attempt 1 failed after 3.25 ms: KeyError: no such key (not retryable)",
        ),
        ("ExecutionFailed", "execution failed at step c: KeyError: no such key"),
    ],
)
def test_step_lines_name_attempts_durations_and_errors(kind: str, expected: str) -> None:
    timeline = audit_timeline(history_with_retries_and_a_failure())
    assert [line.text for line in timeline if line.type == kind] == [expected]


def test_conditions_of_guards_and_unconditional_edges_are_told_apart() -> None:
    timeline = audit_timeline(history_with_retries_and_a_failure())
    conditions = [line.text for line in timeline if line.type == "ConditionEvaluated"]
    assert conditions == [
        "guard of step a: unconditional, branch taken",
        "a -> b: condition `output.ok` was false, branch not taken",
    ]


def test_execution_lines_carry_actor_and_reason() -> None:
    timeline = audit_timeline(history_paused_resumed_and_cancelled())
    by_type = {line.type: line for line in timeline}
    cancel = by_type["CancelRequested"]
    assert cancel.text == "cancel requested with rollback by ann: customer asked"
    assert (cancel.actor, cancel.reason) == ("ann", "customer asked")
    assert by_type["ExecutionPaused"].text == (
        "execution paused at step a, waiting for input.x: missing_input"
    )
    assert by_type["ExecutionPaused"].reason == "missing_input"
    assert by_type["StepCancelled"].text == "step b cancelled: cancelled"

    paused = [
        line for line in audit_timeline(history_completed()) if line.type == "ExecutionPaused"
    ]
    assert paused[0].text == "execution paused by carol: operator"
    assert audit_timeline(history_completed())[2].text == "execution resumed"


def test_rollback_lines_name_the_failure_and_the_compensations() -> None:
    failed = [line.text for line in audit_timeline(history_rolled_back(compensation_fails=True))]
    assert "rollback started after step c failed (ValueError: declined): step_failed" in failed
    assert "step a compensation failed: IOError: undo refused" in failed
    assert failed[-1] == "rollback failed at step a: IOError: undo refused"
    undone = [line.text for line in audit_timeline(history_rolled_back(compensation_fails=False))]
    assert "step a rolled back (compensation returned null)" in undone
    assert undone[-1] == "execution rolled back: every compensation finished"


# -- short lines ----------------------------------------------------------------------


def test_long_and_multi_line_values_are_cut_to_one_short_line() -> None:
    message = "first line\nsecond line\t" + "x" * 500
    entry = HistoryEntry(
        version=3,
        type="StepFailed",
        timestamp=at(1),
        step_id="s" * 300,
        data={
            "step_id": "s" * 300,
            "attempt": 1,
            "error": {"type": "ValueError", "message": message, "retryable": True},
            "retryable": True,
            "duration_ms": 5,
        },
    )
    (line,) = audit_timeline([entry])
    assert "\n" not in line.text and "\t" not in line.text
    assert "first line second line xxx" in line.text
    assert line.text.count("…") == 2  # the step id and the message were cut
    assert len(line.text) < 200


def test_many_input_keys_are_counted_not_listed() -> None:
    inputs = {f"key{n}": n for n in range(8)}
    entry = HistoryEntry(3, "InputProvided", at(1), None, {"inputs": inputs, "actor": None})
    assert describe(entry) == "input provided: key0, key1, key2, key3, key4 +3 more"


def test_entries_lacking_fields_still_get_their_line() -> None:
    for kind in sorted(DESCRIBED_TYPES):
        text = describe(HistoryEntry(1, kind, at(0), None, {}))
        assert text and "\n" not in text and GENERIC not in text


def test_an_unknown_event_type_gets_a_generic_line_naming_its_fields() -> None:
    entry = HistoryEntry(9, "StepTeleported", at(0), "a", {"step_id": "a", "where": "moon"})
    assert describe(entry) == f"StepTeleported {GENERIC}: step_id, where"


def test_retry_times_read_from_json_are_shown_as_recorded() -> None:
    data = {"step_id": "a", "next_attempt": 2, "not_before": "2024-05-01T12:00:04+00:00"}
    entry = HistoryEntry(4, "StepRetryScheduled", at(3), "a", data)
    assert describe(entry) == "step a attempt 2 scheduled not before 2024-05-01T12:00:04+00:00"


def test_text_forms_of_values() -> None:
    assert one_line("a \n b", 10) == "a b"
    assert one_line("abcdef", 4) == "abc…"
    assert brief({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    assert brief(float("nan")) == "nan"
    assert [format_duration(ms) for ms in (0.4216, 37.2, 2500)] == ["0.42 ms", "37 ms", "2.50 s"]


def test_lines_are_json_ready_and_print_on_one_line() -> None:
    timeline = audit_timeline(history_paused_resumed_and_cancelled())
    documents = json.loads(json.dumps([line.to_dict() for line in timeline]))

    assert documents[0]["version"] == 1
    assert documents[0]["timestamp"] == at(0).isoformat()
    request = next(doc for doc in documents if doc["type"] == "CancelRequested")
    assert request == {
        "version": request["version"],
        "timestamp": (at(0) + timedelta(seconds=6)).isoformat(),
        "type": "CancelRequested",
        "step_id": None,
        "text": "cancel requested with rollback by ann: customer asked",
        "actor": "ann",
        "reason": "customer asked",
        "intervention": True,
    }
    assert str(timeline[0]).startswith("   1  2024-05-01T12:00:00.000+00:00  execution ex of")


def test_an_empty_history_has_an_empty_timeline() -> None:
    assert audit_timeline([]) == []


def test_operators_retry_and_skip_show_who_and_why_and_are_marked_as_interventions() -> None:
    timeline = audit_timeline(recorded(reopened_by_operators()))

    by_type = {line.type: line for line in timeline}
    retried = by_type["ExecutionRetried"]
    assert (
        retried.text
        == "execution retried from its failure by ann: service is back (steps run again: a)"
    )
    assert (retried.actor, retried.reason, retried.intervention) == ("ann", "service is back", True)
    skipped = by_type["StepSkippedByOperator"]
    assert skipped.text == (
        "step a skipped by bob: done by hand (output given: id); the steps after it run"
    )
    assert skipped.step_id == "a"
    assert [line.type for line in timeline if line.intervention] == [
        "ExecutionRetried",
        "StepSkippedByOperator",
    ]


def test_a_pause_for_missing_input_is_the_engines_and_an_explicit_pause_an_operators() -> None:
    waiting = HistoryEntry(
        3, "ExecutionPaused", at(1), None, {"missing_var": "input.x", "step_id": "a"}
    )
    asked = HistoryEntry(3, "ExecutionPaused", at(1), None, {"missing_var": None, "actor": "ann"})
    assert [timeline_line(entry).intervention for entry in (waiting, asked)] == [False, True]


def test_data_protection_events_read_as_interventions_with_who_and_why() -> None:
    timeline = audit_timeline(recorded(protected_forgotten_held_and_purged()))

    assert timeline[1].text == (
        "payloads sealed: personal data with the data subject's key subject:k1;"
        " every payload with the execution's own key (retention)"
    )
    assert [(line.type, line.actor, line.reason) for line in timeline if line.intervention] == [
        ("SubjectForgotten", "dpo", "request 12"),
        ("LegalHoldPlaced", "counsel", "case 9"),
        ("LegalHoldReleased", "counsel", "case closed"),
        ("ExecutionPurged", "ops", "retention"),
    ]
    assert timeline[-1].text == "payloads purged after retention (key destroyed) by ops: retention"
