"""``WorkflowEngine``: conditions on edges and step guards, recorded and failing loudly."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import ExecutionStatus, StepStatus, WorkflowEngine
from tests.unit.conftest import NO_RETRY, WAIT, Recorder, entries, statuses, step, workflow


def branching(condition: str, output: Any) -> dict[str, Any]:
    """``check`` returns ``output``; ``then`` runs when ``condition`` holds."""
    return workflow(
        step("check", parameters={"value": output}),
        step("then", "then", depends_on=[{"step": "check", "condition": condition}]),
    )


def conditions_recorded(engine: WorkflowEngine, execution_id: str) -> list[dict[str, Any]]:
    return [e.data for e in entries(engine.ledger.history(execution_id), "ConditionEvaluated")]


class TestConditionalExecution:
    async def test_each_evaluated_condition_is_recorded_with_its_edge_and_value(
        self, engine: WorkflowEngine
    ) -> None:
        engine.action("then")(Recorder("then"))

        state = await engine.run_workflow(
            workflow(
                step("check", parameters={"total": 150}),
                step(
                    "big", "then", depends_on=[{"step": "check", "condition": "output.total > 100"}]
                ),
                step("small", depends_on=[{"step": "check", "condition": "output.total <= 100"}]),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        recorded = conditions_recorded(engine, state.execution_id)
        assert sorted((c["source"], c["target"], c["condition"], c["value"]) for c in recorded) == [
            ("check", "big", "output.total > 100", True),
            ("check", "small", "output.total <= 100", False),
        ]
        assert statuses(state) == {"check": "COMPLETED", "big": "COMPLETED", "small": "SKIPPED"}
        assert state.steps["small"].reason == "branch_not_taken"

    async def test_references_inside_conditions_are_bound_as_values(
        self, engine: WorkflowEngine
    ) -> None:
        engine.action("then")(Recorder("then"))
        definition = workflow(
            step("score", parameters={"points": "${input.points}", "name": "O'Brien"}),
            step(
                "then",
                "then",
                depends_on=[
                    {
                        "step": "score",
                        "condition": "${score.output.points} >= ${input.threshold}"
                        ' and ${score.output.name} == "O\'Brien"',
                    }
                ],
            ),
        )

        passed = await engine.run_workflow(
            definition, {"points": 80, "threshold": 50}, timeout=WAIT
        )
        failed = await engine.run_workflow(
            definition, {"points": 20, "threshold": 50}, timeout=WAIT
        )

        assert passed.steps["then"].status is StepStatus.COMPLETED
        assert failed.steps["then"].status is StepStatus.SKIPPED
        assert [c["value"] for c in conditions_recorded(engine, failed.execution_id)] == [False]
        assert failed.status is ExecutionStatus.COMPLETED

    async def test_a_false_step_guard_skips_the_step(self, engine: WorkflowEngine) -> None:
        recorder = Recorder("then")
        engine.action("then")(recorder)
        definition = workflow(
            step("first"),
            step("guarded", "then", condition="input.send"),
            step("after", parameters={"guarded": "${guarded.status}"}),
        )

        skipped = await engine.run_workflow(definition, {"send": False}, timeout=WAIT)
        ran = await engine.run_workflow(definition, {"send": True}, timeout=WAIT)

        assert skipped.steps["guarded"].status is StepStatus.SKIPPED
        assert skipped.steps["guarded"].reason == "condition_false"
        assert skipped.status is ExecutionStatus.COMPLETED
        guard = conditions_recorded(engine, skipped.execution_id)
        assert [(c["source"], c["target"], c["value"]) for c in guard] == [(None, "guarded", False)]
        assert ran.steps["guarded"].status is StepStatus.COMPLETED
        assert len(recorder.calls) == 1

    @pytest.mark.parametrize(
        ("condition", "output"),
        [
            ("output.value > 5", {"value": "abc"}),  # comparing text and a number
            ("output.missing > 5", {"value": 1}),  # a key that is not there
            ("${input.nope} == 1", {"value": 1}),  # a reference missing at run time
            ("output.value / 0 > 1", {"value": 1}),  # division by zero
        ],
    )
    async def test_a_condition_that_cannot_be_evaluated_fails_the_execution(
        self, engine: WorkflowEngine, condition: str, output: Any
    ) -> None:
        recorder = Recorder("then")
        engine.action("then")(recorder)

        state = await engine.run_workflow(
            workflow(
                step("check", parameters=output),
                step("then", "then", depends_on=[{"step": "check", "condition": condition}]),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.FAILED
        assert state.error is not None
        assert state.error["type"] == "ConditionError"
        assert condition in state.error["message"]
        assert state.steps["then"].status is not StepStatus.SKIPPED
        assert recorder.calls == []
        assert conditions_recorded(engine, state.execution_id) == []

    async def test_a_failing_condition_fails_even_when_another_edge_is_active(
        self, engine: WorkflowEngine
    ) -> None:
        engine.action("then")(Recorder("then"))

        state = await engine.run_workflow(
            workflow(
                step("a", parameters={"n": 1}, depends_on=[]),
                step("b", parameters={"n": "x"}, depends_on=[]),
                step(
                    "join",
                    "then",
                    depends_on=[
                        {"step": "a", "condition": "output.n == 1"},
                        {"step": "b", "condition": "output.n > 0"},
                    ],
                ),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.FAILED
        assert state.error is not None
        assert state.error["type"] == "ConditionError"
        assert state.steps["join"].status is not StepStatus.COMPLETED

    @pytest.mark.parametrize(
        ("value", "taken"),
        [([], False), ([0], True), ("", False), ("x", True), (0, False), (3, True), (None, False)],
    )
    async def test_a_non_boolean_condition_is_taken_by_its_truthiness(
        self, engine: WorkflowEngine, value: Any, taken: bool
    ) -> None:
        engine.action("then")(Recorder("then"))

        state = await engine.run_workflow(branching("output.value", value), timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        expected = StepStatus.COMPLETED if taken else StepStatus.SKIPPED
        assert state.steps["then"].status is expected
        recorded = conditions_recorded(engine, state.execution_id)
        assert [c["value"] for c in recorded] == [taken]
        assert all(type(c["value"]) is bool for c in recorded)

    async def test_conditions_read_status_and_error_after_a_continued_failure(
        self, engine: WorkflowEngine
    ) -> None:
        handled = Recorder("handle")
        engine.action("handle")(handled)

        @engine.action("charge")
        async def charge() -> None:
            raise PermissionError("card declined")

        state = await engine.run_workflow(
            workflow(
                step("charge", "charge", continue_on_error=True, retry=NO_RETRY),
                step(
                    "recover",
                    "handle",
                    parameters={"why": "${charge.error.message}"},
                    depends_on=[
                        {
                            "step": "charge",
                            "condition": "status == 'FAILED' and error.type == 'PermissionError'",
                        }
                    ],
                ),
                step(
                    "ship",
                    depends_on=[{"step": "charge", "condition": "status == 'COMPLETED'"}],
                ),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert statuses(state) == {"charge": "FAILED", "recover": "COMPLETED", "ship": "SKIPPED"}
        assert handled.calls == [{"why": "card declined"}]
        assert state.steps["charge"].error is not None
        assert state.steps["charge"].error["type"] == "PermissionError"

    async def test_a_guard_reads_other_steps_through_steps(self, engine: WorkflowEngine) -> None:
        engine.action("then")(Recorder("then"))

        state = await engine.run_workflow(
            workflow(
                step("a", parameters={"n": 2}, depends_on=[]),
                step("b", parameters={"n": 3}, depends_on=[]),
                step(
                    "sum",
                    "then",
                    depends_on=["a", "b"],
                    condition="steps.a.output.n + steps.b.output.n == 5",
                ),
            ),
            timeout=WAIT,
        )

        assert state.steps["sum"].status is StepStatus.COMPLETED
        assert [c["value"] for c in conditions_recorded(engine, state.execution_id)] == [True]
