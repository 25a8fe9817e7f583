"""``WorkflowEngine`` on the graph format: nodes, connections, triggers and branches."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import DefinitionError, ExecutionStatus, StepStatus, WorkflowEngine
from tests.unit.conftest import FAST_RETRY, WAIT, Recorder, graph, node, statuses

TRIGGER = {"id": "start", "type": "trigger"}


def approval() -> dict[str, Any]:
    """An if/else on the amount, merging into one payment node."""
    return graph(
        [
            TRIGGER,
            node("auto", parameters={"by": "policy"}),
            node("manager", parameters={"by": "${input.boss}"}),
            node("pay", "pay", parameters={"amount": "${start.output.amount}"}),
        ],
        [
            {"source": "start", "target": "auto", "condition": "input.amount <= 100"},
            {"source": "start", "target": "manager", "condition": "input.amount > 100"},
            {"source": "auto", "target": "pay"},
            {"source": "manager", "target": "pay"},
        ],
    )


class TestGraphConversion:
    async def test_nodes_and_connections_run_as_steps(self, engine: WorkflowEngine) -> None:
        log: list[str] = []
        engine.action("pay")(Recorder("pay", log))

        state = await engine.run_workflow(
            graph(
                [
                    node("fetch", parameters={"total": 12}),
                    node("pay", "pay", parameters={"amount": "${fetch.output.total}"}),
                ],
                [{"source": "fetch", "target": "pay"}],
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs == {"fetch": {"total": 12}, "pay": {"amount": 12}}
        assert log == ["pay"]

    async def test_a_trigger_node_outputs_the_execution_input_and_runs_no_action(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("pay")
        engine.action("pay")(recorder)
        given = {"amount": 5, "boss": "ann"}

        state = await engine.run_workflow(approval(), given, timeout=WAIT)

        assert state.outputs["start"] == given
        assert state.steps["start"].status is StepStatus.COMPLETED
        assert state.steps["start"].attempts == 1
        assert recorder.calls == [{"amount": 5}]

    @pytest.mark.parametrize(
        ("amount", "taken", "not_taken"), [(50, "auto", "manager"), (500, "manager", "auto")]
    )
    async def test_an_if_else_skips_the_branch_not_taken_and_completes_the_merge(
        self, engine: WorkflowEngine, amount: int, taken: str, not_taken: str
    ) -> None:
        engine.action("pay")(Recorder("pay"))

        state = await engine.run_workflow(
            approval(), {"amount": amount, "boss": "ann"}, timeout=WAIT
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert statuses(state) == {
            "start": "COMPLETED",
            taken: "COMPLETED",
            not_taken: "SKIPPED",
            "pay": "COMPLETED",
        }
        assert state.steps[not_taken].reason == "branch_not_taken"
        assert state.outputs["pay"] == {"amount": amount}
        assert not_taken not in state.outputs

    async def test_a_whole_dead_branch_is_skipped_down_to_the_merge(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(
            graph(
                [TRIGGER, node("yes"), node("no1"), node("no2"), node("merge")],
                [
                    {"source": "start", "target": "yes", "condition": "input.go"},
                    {"source": "start", "target": "no1", "condition": "not input.go"},
                    {"source": "no1", "target": "no2"},
                    {"source": "yes", "target": "merge"},
                    {"source": "no2", "target": "merge"},
                ],
            ),
            {"go": True},
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert statuses(state) == {
            "start": "COMPLETED",
            "yes": "COMPLETED",
            "no1": "SKIPPED",
            "no2": "SKIPPED",
            "merge": "COMPLETED",
        }
        assert state.steps["no2"].reason == "branch_not_taken"

    async def test_a_cycle_is_a_definition_error_naming_its_nodes(
        self, engine: WorkflowEngine
    ) -> None:
        definition = graph(
            [TRIGGER, node("alpha"), node("beta"), node("gamma")],
            [
                {"source": "start", "target": "alpha"},
                {"source": "alpha", "target": "beta"},
                {"source": "beta", "target": "gamma"},
                {"source": "gamma", "target": "alpha"},
            ],
        )

        with pytest.raises(DefinitionError) as raised:
            await engine.start_workflow(definition)

        message = str(raised.value)
        for name in ("alpha", "beta", "gamma"):
            assert name in message
        assert "cycle" in message.lower()
        assert engine.ledger.list() == []

    async def test_a_connection_to_an_unknown_node_is_a_definition_error(
        self, engine: WorkflowEngine
    ) -> None:
        definition = graph(
            [TRIGGER, node("a")],
            [{"source": "start", "target": "a"}, {"source": "a", "target": "ghost"}],
        )

        with pytest.raises(DefinitionError) as raised:
            await engine.start_workflow(definition)

        assert "ghost" in str(raised.value)
        assert any("connections" in problem.path for problem in raised.value.errors)
        assert engine.ledger.list() == []

    async def test_a_paused_graph_resumes_from_the_paused_node(
        self, engine: WorkflowEngine
    ) -> None:
        recorder = Recorder("pay")
        engine.action("pay")(recorder)
        definition = approval()

        paused = await engine.run_workflow(definition, {"amount": 500}, timeout=WAIT)

        assert paused.status is ExecutionStatus.PAUSED
        assert paused.paused_on == "input.boss"
        assert paused.steps["manager"].status is StepStatus.PAUSED

        await engine.resume_workflow(paused.execution_id, {"boss": "bo"}, actor="ops")
        done = await engine.wait_for(paused.execution_id, timeout=WAIT)

        assert done.status is ExecutionStatus.COMPLETED
        assert done.outputs["manager"] == {"by": "bo"}
        assert done.steps["start"].attempts == 1
        assert recorder.calls == [{"amount": 500}]
        history = engine.ledger.history(paused.execution_id)
        provided = [e for e in history if e.type == "InputProvided"]
        assert [(e.data["inputs"], e.data["actor"]) for e in provided] == [({"boss": "bo"}, "ops")]

    async def test_a_resumed_graph_ends_with_the_outputs_of_a_run_given_everything(
        self, engine: WorkflowEngine
    ) -> None:
        engine.action("pay")(Recorder("pay"))
        paused = await engine.run_workflow(approval(), {"amount": 500}, timeout=WAIT)
        await engine.resume_workflow(paused.execution_id, {"boss": "bo"})
        resumed = await engine.wait_for(paused.execution_id, timeout=WAIT)

        direct = await engine.run_workflow(approval(), {"amount": 500, "boss": "bo"}, timeout=WAIT)

        assert resumed.status is direct.status is ExecutionStatus.COMPLETED
        assert resumed.outputs == direct.outputs

    async def test_a_trigger_is_recorded_completed_even_when_the_next_node_cannot_start(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(
            graph(
                [TRIGGER, node("m", parameters={"boss": "${start.output.boss}"})],
                [{"source": "start", "target": "m"}],
            ),
            {"amount": 1},
            timeout=WAIT,
        )

        assert state.status is not ExecutionStatus.COMPLETED
        assert state.steps["start"].status is StepStatus.COMPLETED
        assert state.steps["start"].output == {"amount": 1}

    async def test_node_options_such_as_retry_apply(self, engine: WorkflowEngine) -> None:
        attempts: list[int] = []

        @engine.action("flaky")
        async def flaky() -> str:
            attempts.append(1)
            if len(attempts) < 2:
                raise ConnectionError("try again")
            return "ok"

        state = await engine.run_workflow(
            graph(
                [TRIGGER, node("f", "flaky", retry=FAST_RETRY)],
                [{"source": "start", "target": "f"}],
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.steps["f"].attempts == 2
        assert state.outputs["f"] == "ok"
