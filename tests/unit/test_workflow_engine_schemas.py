"""``WorkflowEngine``: JSON Schemas on step inputs and outputs, and on the workflow input."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import DefinitionError, ExecutionStatus, SchemaValidationError, WorkflowEngine
from tests.unit.conftest import FAST_RETRY, WAIT, Recorder, entries, step, workflow

ORDER_INPUT = {
    "type": "object",
    "required": ["order"],
    "properties": {
        "order": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["sku", "qty"],
                        "properties": {
                            "sku": {"type": "string"},
                            "qty": {"type": "integer", "minimum": 1},
                        },
                    },
                }
            },
        }
    },
}

RECEIPT_OUTPUT = {
    "type": "object",
    "required": ["receipt", "at"],
    "properties": {"receipt": {"type": "string"}, "at": {"type": "string", "format": "date-time"}},
}

RETRY_MANY = {**FAST_RETRY, "max_attempts": 5}


def place(order: Any) -> dict[str, Any]:
    return workflow(
        step(
            "place",
            "place",
            parameters={"order": order},
            input_schema=ORDER_INPUT,
            retry=RETRY_MANY,
        )
    )


def issuing(engine: WorkflowEngine, receipt: Any) -> list[int]:
    """Register ``issue``, returning ``receipt``; return its list of calls."""
    calls: list[int] = []

    @engine.action("issue")
    async def issue() -> Any:
        calls.append(1)
        return receipt

    return calls


def issue_workflow() -> dict[str, Any]:
    return workflow(step("issue", "issue", output_schema=RECEIPT_OUTPUT, retry=RETRY_MANY))


class TestSchemaValidation:
    async def test_parameters_not_matching_the_input_schema_fail_the_step_at_once(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("place")
        engine.action("place")(recorder)

        state = await engine.run_workflow(
            place({"items": [{"sku": "A", "qty": "${input.qty}"}, {"qty": 2}]}),
            {"qty": 0},
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.FAILED
        assert recorder.calls == []
        assert state.steps["place"].attempts == 1
        error = state.steps["place"].error
        assert error is not None
        assert error["type"] == "SchemaValidationError"
        assert error["retryable"] is False
        assert "$.order.items[0].qty" in error["message"]
        assert "$.order.items[1]" in error["message"]  # sku missing
        history = engine.ledger.history(state.execution_id)
        assert entries(history, "StepRetryScheduled") == []

    async def test_parameters_matching_the_input_schema_reach_the_action(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("place")
        engine.action("place")(recorder)
        order = {"items": [{"sku": "A", "qty": 2}]}

        state = await engine.run_workflow(place(order), timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert recorder.calls == [{"order": order}]

    async def test_an_output_not_matching_the_output_schema_fails_without_retry(
        self, engine: WorkflowEngine
    ) -> None:
        calls = issuing(engine, {"receipt": 42, "at": "2024-05-01T10:00:00Z"})

        state = await engine.run_workflow(issue_workflow(), timeout=WAIT)

        assert state.status is ExecutionStatus.FAILED
        assert calls == [1]
        error = state.steps["issue"].error
        assert error is not None
        assert error["type"] == "SchemaValidationError"
        assert error["retryable"] is False
        assert "$.receipt" in error["message"]
        assert "output" in error["message"]
        assert state.steps["issue"].output is None

    async def test_an_output_matching_the_output_schema_is_recorded(
        self, engine: WorkflowEngine
    ) -> None:
        receipt = {"receipt": "R-1", "at": "2024-05-01T10:00:00+02:00"}
        issuing(engine, receipt)

        state = await engine.run_workflow(issue_workflow(), timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs == {"issue": receipt}

    @pytest.mark.parametrize("moment", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-01"])
    async def test_formats_such_as_date_time_are_checked(
        self, engine: WorkflowEngine, moment: str
    ) -> None:
        issuing(engine, {"receipt": "R-1", "at": moment})

        state = await engine.run_workflow(issue_workflow(), timeout=WAIT)

        assert state.status is ExecutionStatus.FAILED
        error = state.steps["issue"].error
        assert error is not None
        assert "$.at" in error["message"]
        assert "date-time" in error["message"]

    async def test_the_workflow_input_schema_lists_every_violation_with_its_path(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("place")
        engine.action("place")(recorder)
        definition = workflow(
            step("place", "place", parameters={"order": "${input.order}"}), input_schema=ORDER_INPUT
        )

        with pytest.raises(SchemaValidationError) as raised:
            await engine.start_workflow(
                definition, {"order": {"items": [{"sku": 1, "qty": 1}, {"sku": "B", "qty": 0}]}}
            )

        assert raised.value.schema_type == "input"
        assert [e["path"] for e in raised.value.errors] == [
            "$.order.items[0].sku",
            "$.order.items[1].qty",
        ]
        assert engine.ledger.list() == []
        state = await engine.run_workflow(
            definition, {"order": {"items": [{"sku": "B", "qty": 3}]}}, timeout=WAIT
        )
        assert state.status is ExecutionStatus.COMPLETED
        assert recorder.calls == [{"order": {"items": [{"sku": "B", "qty": 3}]}}]

    async def test_an_invalid_schema_in_a_definition_is_refused_at_start(
        self, engine: WorkflowEngine
    ) -> None:
        definition = workflow(step("s", input_schema={"type": "no-such-type"}))

        with pytest.raises(DefinitionError) as raised:
            await engine.start_workflow(definition)

        assert any("input_schema" in problem.path for problem in raised.value.errors)
        assert engine.ledger.list() == []

    async def test_a_schema_failure_with_compensation_rolls_back(
        self, engine: WorkflowEngine
    ) -> None:
        undone: list[str] = []

        @engine.action("undo")
        async def undo() -> None:
            undone.append("reserve")

        issuing(engine, {"receipt": None})
        state = await engine.run_workflow(
            workflow(
                step("reserve", compensate={"action": "undo"}),
                step("issue", "issue", output_schema=RECEIPT_OUTPUT, retry=RETRY_MANY),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.ROLLED_BACK
        assert undone == ["reserve"]
