"""``WorkflowEngine``: ``${...}`` references resolved into the parameters actions receive."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import DefinitionError, ExecutionStatus, StepStatus, WorkflowEngine
from tests.unit.conftest import WAIT, Recorder, entries, step, workflow


def receiving(engine: WorkflowEngine) -> Recorder:
    """Register and return an action that records the parameters it receives."""
    recorder = Recorder("take")
    engine.action("take")(recorder)
    return recorder


class TestParameterResolution:
    async def test_input_references_reach_nested_values(self, engine: WorkflowEngine) -> None:
        recorder = receiving(engine)

        state = await engine.run_workflow(
            workflow(step("s", "take", parameters={"city": "${input.customer.address.city}"})),
            {"customer": {"address": {"city": "Lyon"}}},
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert recorder.calls == [{"city": "Lyon"}]

    async def test_step_output_references_index_into_lists(self, engine: WorkflowEngine) -> None:
        recorder = receiving(engine)

        @engine.action("fetch")
        async def fetch() -> dict[str, Any]:
            return {"items": [{"name": "first"}, {"name": "second"}]}

        await engine.run_workflow(
            workflow(
                step("fetch", "fetch"),
                step(
                    "use",
                    "take",
                    parameters={
                        "head": "${fetch.output.items[0].name}",
                        "next": "${fetch.output.items[1].name}",
                        "status": "${fetch.status}",
                    },
                ),
            ),
            timeout=WAIT,
        )

        assert recorder.calls == [{"head": "first", "next": "second", "status": "COMPLETED"}]

    async def test_a_whole_value_reference_keeps_the_values_type(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = receiving(engine)
        given = {"n": 42, "f": 1.5, "flag": True, "items": [1, "two"], "map": {"k": [None]}}
        given["nothing"] = None

        state = await engine.run_workflow(
            workflow(step("s", "take", parameters={key: f"${{input.{key}}}" for key in given})),
            given,
            timeout=WAIT,
        )

        assert recorder.calls == [given]
        received = recorder.calls[0]
        assert type(received["n"]) is int
        assert type(received["flag"]) is bool
        assert received["nothing"] is None
        started = entries(engine.ledger.history(state.execution_id), "StepStarted", "s")
        assert started[0].data["parameters"] == given

    async def test_references_inside_a_longer_string_are_interpolated(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = receiving(engine)

        await engine.run_workflow(
            workflow(
                step(
                    "s",
                    "take",
                    parameters={"text": "${input.name} is ${input.age}; ${input.ok} ${input.tags}"},
                )
            ),
            {"name": "Ann", "age": 30, "ok": True, "tags": {"b": None, "a": 1}},
            timeout=WAIT,
        )

        # Strings as they are; other values as canonical JSON.
        assert recorder.calls == [{"text": 'Ann is 30; true {"a":1,"b":null}'}]

    async def test_a_doubled_dollar_is_a_literal_reference_marker(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = receiving(engine)

        await engine.run_workflow(
            workflow(
                step(
                    "s",
                    "take",
                    parameters={
                        "literal": "$${input.name}",
                        "mixed": "cost $${price} for ${input.name}",
                    },
                )
            ),
            {"name": "Ann"},
            timeout=WAIT,
        )

        assert recorder.calls == [{"literal": "${input.name}", "mixed": "cost ${price} for Ann"}]

    async def test_references_inside_nested_dicts_and_lists_are_resolved(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = receiving(engine)

        await engine.run_workflow(
            workflow(
                step("first", parameters={"id": 7}),
                step(
                    "s",
                    "take",
                    parameters={
                        "order": {
                            "lines": [
                                {"sku": "${input.sku}", "qty": "${input.qty}"},
                                ["${first.output.id}", "id-${first.output.id}", 3],
                            ],
                            "plain": {"deep": ["no reference"]},
                        }
                    },
                ),
            ),
            {"sku": "A-1", "qty": 2},
            timeout=WAIT,
        )

        assert recorder.calls == [
            {
                "order": {
                    "lines": [{"sku": "A-1", "qty": 2}, [7, "id-7", 3]],
                    "plain": {"deep": ["no reference"]},
                }
            }
        ]

    async def test_a_missing_input_pauses_then_resume_ends_as_if_it_had_been_given(
        self, engine: WorkflowEngine
    ) -> None:
        calls = receiving(engine).calls
        definition = workflow(
            step("greet", parameters={"text": "hello"}),
            step(
                "take", "take", parameters={"who": "${input.name}", "said": "${greet.output.text}"}
            ),
            step("last", parameters={"got": "${take.output.who}"}),
        )

        paused = await engine.run_workflow(definition, {}, timeout=WAIT)

        assert paused.status is ExecutionStatus.PAUSED
        assert paused.paused_on == "input.name"
        assert paused.steps["greet"].status is StepStatus.COMPLETED
        assert paused.steps["take"].status is StepStatus.PAUSED
        assert paused.steps["last"].status is StepStatus.PENDING
        assert calls == []

        await engine.resume_workflow(paused.execution_id, {"name": "Ann"})
        resumed = await engine.wait_for(paused.execution_id, timeout=WAIT)
        direct = await engine.run_workflow(definition, {"name": "Ann"}, timeout=WAIT)

        assert resumed.status is ExecutionStatus.COMPLETED
        assert resumed.outputs == direct.outputs
        assert resumed.input == direct.input == {"name": "Ann"}
        assert resumed.paused_on is None
        assert calls == [{"who": "Ann", "said": "hello"}] * 2
        assert resumed.steps["greet"].attempts == 1  # not run again by the resume

    async def test_resuming_without_the_missing_input_pauses_again(
        self, engine: WorkflowEngine
    ) -> None:
        definition = workflow(step("s", parameters={"a": "${input.a}", "b": "${input.b}"}))
        paused = await engine.run_workflow(definition, {}, timeout=WAIT)
        assert paused.paused_on == "input.a"

        await engine.resume_workflow(paused.execution_id, {"a": 1})
        again = await engine.wait_for(paused.execution_id, timeout=WAIT)
        assert again.status is ExecutionStatus.PAUSED
        assert again.paused_on == "input.b"

        await engine.resume_workflow(paused.execution_id, {"b": 2})
        done = await engine.wait_for(paused.execution_id, timeout=WAIT)
        assert done.status is ExecutionStatus.COMPLETED
        assert done.outputs == {"s": {"a": 1, "b": 2}}

    async def test_inputs_given_on_resume_are_merged_into_the_execution_input(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = receiving(engine)
        definition = workflow(
            step(
                "s",
                "take",
                parameters={"id": "${input.customer.id}", "to": "${input.customer.email}"},
            )
        )
        paused = await engine.run_workflow(definition, {"customer": {"id": 7}}, timeout=WAIT)
        assert paused.paused_on == "input.customer.email"

        await engine.resume_workflow(paused.execution_id, {"customer": {"email": "a@b.c"}})
        done = await engine.wait_for(paused.execution_id, timeout=WAIT)

        assert done.status is ExecutionStatus.COMPLETED
        assert done.input == {"customer": {"id": 7, "email": "a@b.c"}}
        assert recorder.calls == [{"id": 7, "to": "a@b.c"}]

    async def test_a_reference_to_a_step_that_is_not_upstream_is_refused_at_start(
        self, engine: WorkflowEngine
    ) -> None:
        definition = workflow(
            step("a", parameters={"x": "${b.output.y}"}),
            step("b", parameters={"y": 1}),
        )

        with pytest.raises(DefinitionError) as raised:
            await engine.start_workflow(definition, execution_id="never")

        assert any("'b'" in problem.message for problem in raised.value.errors)
        assert engine.ledger.list() == []
