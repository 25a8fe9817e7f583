"""The kit passes correct workflows, exercising every crash point of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowledger import ExecutionStatus, RetryPolicy, StepStatus, load_definition
from flowledger.testing import Fake, FakeCall, check_workflow, check_workflow_async


def sequence(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"id": "kit", "steps": list(steps)}


def compensated(step_id: str, action: str, **options: Any) -> dict[str, Any]:
    undo = {"action": "refund", "parameters": {"of": step_id}}
    return {"id": step_id, "action": action, "compensate": undo, **options}


def test_a_sequence_passes_at_every_crash_point() -> None:
    definition = sequence(
        {"id": "charge", "action": "charge", "parameters": {"amount": "${input.amount}"}},
        {"id": "ship", "action": "ship", "parameters": {"paid": "${charge.output.amount}"}},
    )
    fakes = {"charge": Fake.echoes(), "ship": Fake.returns({"tracking": "T1"})}

    report = check_workflow(definition, fakes, {"amount": 5})

    assert report.state.status is ExecutionStatus.COMPLETED
    assert report.state.outputs == {"charge": {"amount": 5}, "ship": {"tracking": "T1"}}
    assert report.properties == ("replay", "crash recovery")
    assert [point.crash_after for point in report.crash_points] == list(
        range(1, report.history_length + 1)
    )
    assert report.call_count("charge") == 1
    assert report.call_count("ship", "ship") == 1


def test_parallel_branches_with_a_join_pass() -> None:
    definition = sequence(
        {"id": "left", "action": "work", "depends_on": [], "parameters": {"side": "L"}},
        {"id": "right", "action": "work", "depends_on": [], "parameters": {"side": "R"}},
        {
            "id": "join",
            "action": "work",
            "depends_on": ["left", "right"],
            "parameters": {"sides": ["${left.output.side}", "${right.output.side}"]},
        },
    )

    report = check_workflow(definition, {"work": Fake.echoes()})

    assert report.state.outputs["join"] == {"sides": ["L", "R"]}
    assert {call.step_id for call in report.calls} == {"left", "right", "join"}


def test_retries_pass_and_their_waits_are_removed() -> None:
    retry = {"max_attempts": 3, "initial_interval": 30.0, "jitter": 0.5}
    definition = sequence({"id": "flaky", "action": "flaky", "retry": retry})

    report = check_workflow(definition, {"flaky": Fake.fails(times=2, then={"ok": True})})

    assert report.state.outputs == {"flaky": {"ok": True}}
    assert report.state.steps["flaky"].attempts == 3
    assert [call.attempt for call in report.calls] == [1, 2, 3]
    policy = report.definition.step("flaky").retry
    assert policy is not None
    assert (policy.initial_interval, policy.max_attempts) == (0.0, 3)


def test_exhausted_retries_fail_alike_after_every_crash() -> None:
    definition = sequence({"id": "flaky", "action": "flaky"})
    policy = RetryPolicy(max_attempts=2, initial_interval=5.0)

    report = check_workflow(definition, {"flaky": Fake.fails(times=2)}, retry_policy=policy)

    assert report.state.status is ExecutionStatus.FAILED
    assert report.state.error is not None
    assert report.state.error["type"] == "TransientError"


def test_a_rollback_passes_and_compensates_in_reverse_order() -> None:
    definition = sequence(
        compensated("reserve", "reserve"),
        compensated("charge", "charge"),
        {"id": "ship", "action": "ship"},
    )
    fakes = {
        "reserve": Fake.returns({"held": 1}),
        "charge": Fake.returns({"paid": 5}),
        "ship": Fake.raises(ValueError("no courier")),
        "refund": Fake.echoes(),
    }

    report = check_workflow(definition, fakes)

    assert report.state.status is ExecutionStatus.ROLLED_BACK
    assert "rollback" in report.properties
    undone = [call.step_id for call in report.calls if call.compensation]
    assert undone == ["charge", "reserve"]
    assert report.state.error is not None
    assert report.state.error["type"] == "ValueError"


def test_pause_and_resume_pass_and_match_a_run_with_the_input() -> None:
    definition = sequence(
        {"id": "greet", "action": "greet", "parameters": {"name": "${input.name}"}},
        {"id": "after", "action": "greet", "parameters": {"name": "again"}},
    )

    report = check_workflow(definition, {"greet": Fake.echoes()}, resume_inputs={"name": "Ada"})

    assert report.resumed
    assert "resume" in report.properties
    assert report.state.outputs["greet"] == {"name": "Ada"}
    assert all(point.events >= report.history_length - 1 for point in report.crash_points)


def test_a_paused_execution_without_inputs_to_give_stays_paused() -> None:
    definition = sequence({"id": "greet", "action": "echo", "parameters": {"n": "${input.n}"}})

    report = check_workflow(definition, {})

    assert report.state.status is ExecutionStatus.PAUSED
    assert not report.resumed
    assert "resume" not in report.properties


def test_the_graph_format_with_a_condition_passes() -> None:
    definition = {
        "id": "approval",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "score", "config": {"action": "score", "parameters": {"n": "${input.n}"}}},
            {"id": "approve", "config": {"action": "decide", "parameters": {"ok": True}}},
            {"id": "review", "config": {"action": "decide", "parameters": {"ok": False}}},
        ],
        "connections": [
            {"source": "start", "target": "score"},
            {"source": "score", "target": "approve", "condition": "output.n < 10"},
            {"source": "score", "target": "review", "condition": "output.n >= 10"},
        ],
    }
    fakes = {"score": Fake.echoes(), "decide": Fake.echoes()}

    report = check_workflow(definition, fakes, {"n": 3})

    assert report.state.steps["review"].status is StepStatus.SKIPPED
    assert report.state.outputs["approve"] == {"ok": True}
    assert "ConditionEvaluated" in {entry.type for entry in report.history}


def test_fakes_answer_by_step_and_plain_callables_are_called_like_actions() -> None:
    def double(n: int) -> dict[str, int]:
        return {"n": n * 2}

    definition = sequence(
        {"id": "one", "action": "double", "parameters": {"n": 1}},
        {"id": "two", "action": "pick", "parameters": {"n": "${one.output.n}"}},
        {"id": "three", "action": "pick"},
    )
    pick = Fake.by_step({"two": Fake.echoes()}, default=Fake.returns("other"))

    report = check_workflow(definition, {"double": double, "pick": pick}, crash_points=[3])

    assert report.state.outputs == {"one": {"n": 2}, "two": {"n": 2}, "three": "other"}
    assert [point.crash_after for point in report.crash_points] == [3]


async def test_the_async_variant_runs_in_the_test_loop_and_can_keep_stores(
    tmp_path: Path,
) -> None:
    async def respond(call: FakeCall) -> dict[str, Any]:
        return {"step": call.step_id, "attempt": call.attempt}

    definition = load_definition(sequence({"id": "only", "action": "answer"}))

    report = await check_workflow_async(
        definition,
        {"answer": Fake(respond)},
        crash_points=[2],
        store_dir=tmp_path,
        instant_retries=False,
    )

    assert report.state.outputs == {"only": {"step": "only", "attempt": 1}}
    assert report.definition is definition
    stores = sorted(path.name for path in tmp_path.glob("check-*/*.db"))
    assert stores == ["crash-after-0002.db", "reference.db"]
