"""What-if replay: a recorded execution's input on a changed definition, without side effects.

Recorded executions are produced by running real workflows with ``WorkflowEngine`` on
a SQLite file in ``tmp_path``, with actions that log their calls; the replays must
never add to those logs.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowledger import (
    ActionRegistry,
    ExecutionNotFoundError,
    ExecutionStatus,
    Ledger,
    NonRetryableError,
    SchemaValidationError,
    WorkflowEngine,
)
from flowledger.engine.what_if import WhatIfReport, replay_what_if, what_if
from flowledger.engine.what_if_actions import describe_change
from tests.unit.conftest import FAST_RETRY, WAIT, Gate, Recorder, graph, node, step, workflow

TRIGGER = {"id": "start", "type": "trigger"}


def order_workflow() -> dict[str, Any]:
    """Charge, ship what was charged, then say so."""
    return workflow(
        step("charge", "charge", parameters={"amount": "${input.amount}"}),
        step("ship", "ship", parameters={"paid": "${charge.output.amount}", "to": "${input.to}"}),
        step("notify", "notify", parameters={"message": "shipped"}),
        workflow_id="order",
    )


def edited(definition: dict[str, Any], step_id: str, **changes: Any) -> dict[str, Any]:
    """Return a copy of a steps-format definition with one step's keys changed."""
    changed = copy.deepcopy(definition)
    for each in changed["steps"]:
        if each["id"] == step_id:
            each.update(changes)
    return changed


def without(definition: dict[str, Any], step_id: str) -> dict[str, Any]:
    """Return a copy of a steps-format definition without one step."""
    changed = copy.deepcopy(definition)
    changed["steps"] = [each for each in changed["steps"] if each["id"] != step_id]
    return changed


class CarrierDown:
    """A shipping action that always fails (retryably) and logs its calls."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def __call__(self, **parameters: Any) -> None:
        self.log.append("ship")
        raise ConnectionError("carrier down")


class Recording:
    """Runs workflows for real on one SQLite file, then reads them through a ledger."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.log: list[str] = []
        self.actions = ActionRegistry(
            {name: Recorder(name, self.log) for name in ("charge", "ship", "notify", "refund")}
        )
        self.ledgers: list[Ledger] = []

    async def run(self, definition: dict[str, Any], input_data: dict[str, Any]) -> str:
        """Record one execution; return its id."""
        engine = WorkflowEngine(store=self.store_url, actions=self.actions)
        try:
            async with engine:
                state = await engine.run_workflow(definition, input_data, timeout=WAIT)
        finally:
            engine.close()
        return state.execution_id

    def ledger(self) -> Ledger:
        """A ledger on the recorded store (closed after the test)."""
        opened = Ledger(self.store_url)
        self.ledgers.append(opened)
        return opened


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[Recording]:
    made = Recording(f"sqlite:///{tmp_path}/ledger.db")
    yield made
    for ledger in made.ledgers:
        ledger.close()


async def replay(
    recording: Recording, execution_id: str, definition: Any, **options: Any
) -> WhatIfReport:
    """Replay, failing the test instead of hanging if the replay never ends."""
    return await asyncio.wait_for(
        what_if(recording.ledger(), execution_id, definition, **options), WAIT
    )


async def order(recording: Recording) -> str:
    """Record one completed order."""
    return await recording.run(order_workflow(), {"amount": 5, "to": "Oslo"})


class TestUnchangedDefinition:
    async def test_every_step_is_served_and_nothing_diverges(self, recording: Recording) -> None:
        execution_id = await order(recording)
        calls_before = list(recording.log)

        report = await replay(recording, execution_id, order_workflow())

        assert recording.log == calls_before == ["charge", "ship", "notify"]
        assert report.first_divergence is None
        assert report.matches
        assert report.what_if_status is ExecutionStatus.COMPLETED
        assert report.recorded_status is ExecutionStatus.COMPLETED
        assert {s.produced_by for s in report.steps.values()} == {"served"}
        assert report.steps["ship"].what_if_output == {"paid": 5, "to": "Oslo"}
        assert report.outputs_changed == ()
        assert report.recorded_definition_hash == report.what_if_definition_hash

    async def test_the_report_carries_the_replays_own_history(self, recording: Recording) -> None:
        execution_id = await order(recording)

        report = await replay(recording, execution_id, order_workflow())

        kinds = [entry.type for entry in report.history]
        assert kinds[0] == "ExecutionStarted"
        assert kinds[-1] == "ExecutionCompleted"
        assert kinds.count("StepCompleted") == 3
        assert all(entry.execution_id == execution_id for entry in report.history)

    async def test_a_definition_given_as_json_text_or_a_path_is_loaded(
        self, recording: Recording, tmp_path: Path
    ) -> None:
        execution_id = await order(recording)
        path = tmp_path / "order.json"
        path.write_text(json.dumps(order_workflow()))

        from_text = await replay(recording, execution_id, json.dumps(order_workflow()))
        from_path = await replay(recording, execution_id, path)

        assert from_text.matches and from_path.matches

    async def test_built_in_actions_are_served_or_stubbed_never_run(
        self, recording: Recording
    ) -> None:
        definition = workflow(
            step("nap", "sleep", parameters={"seconds": 0.01}),
            step("say", "echo", parameters={"text": "hi"}),
        )
        execution_id = await recording.run(definition, {})
        longer = edited(definition, "nap", parameters={"seconds": 3600})

        served = await replay(recording, execution_id, definition)
        stubbed = await replay(recording, execution_id, longer)

        assert served.steps["nap"].what_if_output == {"slept": 0.01}
        assert stubbed.steps["nap"].produced_by == "stubbed"
        assert stubbed.steps["nap"].what_if_output == {}
        assert stubbed.steps["say"].produced_by == "served"

    async def test_an_input_the_new_schema_rejects_is_refused(self, recording: Recording) -> None:
        execution_id = await order(recording)
        strict = {**order_workflow(), "input_schema": {"required": ["currency"]}}

        with pytest.raises(SchemaValidationError):
            await replay(recording, execution_id, strict)

    async def test_an_unknown_execution_is_refused(self, recording: Recording) -> None:
        await order(recording)

        with pytest.raises(ExecutionNotFoundError):
            await replay(recording, "no-such-execution", order_workflow())


class TestChangedDefinition:
    async def test_a_changed_parameter_is_stubbed_and_is_the_first_divergence(
        self, recording: Recording
    ) -> None:
        execution_id = await order(recording)
        changed = edited(
            order_workflow(), "charge", parameters={"amount": "${input.amount}", "fee": 1}
        )

        report = await replay(recording, execution_id, changed, stubs={"charge": {"amount": 6}})

        charge, ship, notify = (report.steps[i] for i in ("charge", "ship", "notify"))
        assert report.first_divergence == "charge"
        assert charge.produced_by == "stubbed"
        assert charge.reason == "parameters changed: fee added"
        assert charge.divergence == "stubbed: parameters changed: fee added"
        # Downstream: ship now gets another amount, so it is stubbed too.
        assert ship.reason == "parameters changed: paid: 5 → 6"
        assert ship.what_if_output == {}
        assert notify.produced_by == "served"
        assert report.outputs_changed == ("charge", "ship")
        assert recording.log == ["charge", "ship", "notify"]

    async def test_a_changed_action_is_stubbed(self, recording: Recording) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "notify", action="echo")

        report = await replay(recording, execution_id, changed)

        assert report.steps["notify"].reason == "action changed"
        assert report.first_divergence == "notify"

    async def test_a_new_step_is_stubbed_and_later_steps_are_still_served(
        self, recording: Recording
    ) -> None:
        execution_id = await order(recording)
        definition = order_workflow()
        definition["steps"].insert(1, step("fraud", "score", parameters={"amount": 5}))

        report = await replay(recording, execution_id, definition, stubs={"score": {"risk": 0}})

        assert list(report.steps) == ["charge", "fraud", "ship", "notify"]
        assert report.steps["fraud"].reason == "new step"
        assert report.steps["fraud"].recorded_status is None
        assert report.steps["fraud"].what_if_output == {"risk": 0}
        assert report.first_divergence == "fraud"
        assert report.steps["ship"].produced_by == "served"
        assert report.what_if_status is ExecutionStatus.COMPLETED

    async def test_a_removed_step_is_reported_where_it_was(self, recording: Recording) -> None:
        execution_id = await order(recording)

        report = await replay(recording, execution_id, without(order_workflow(), "ship"))

        ship = report.steps["ship"]
        assert list(report.steps) == ["charge", "ship", "notify"]
        assert ship.produced_by == "not run"
        assert ship.reason == "removed from the definition"
        assert ship.what_if_status is None
        assert ship.divergence == "ran before, not run now (removed from the definition)"
        assert report.first_divergence == "ship"
        assert report.outputs_changed == ("ship",)

    async def test_a_new_output_schema_checks_the_recorded_outputs(
        self, recording: Recording
    ) -> None:
        execution_id = await order(recording)
        schema = {"type": "object", "required": ["message", "sent_at"]}
        stricter = edited(order_workflow(), "notify", output_schema=schema)

        report = await replay(recording, execution_id, stricter)

        notify = report.steps["notify"]
        assert notify.produced_by == "served"
        assert notify.divergence == "status changed: COMPLETED → FAILED"
        assert notify.what_if_error is not None
        assert notify.what_if_error["type"] == "SchemaValidationError"
        assert report.first_divergence == "notify"
        assert report.what_if_status is ExecutionStatus.FAILED

    async def test_a_missing_input_pauses_the_replay(self, recording: Recording) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "notify", parameters={"to": "${input.email}"})

        report = await replay(recording, execution_id, changed)

        assert report.what_if_status is ExecutionStatus.PAUSED
        assert report.paused_on == "input.email"
        assert report.first_divergence == "notify"
        assert report.steps["notify"].produced_by == "not run"
        assert report.steps["notify"].divergence == "ran before, not run now (paused: input.email)"
        assert "(paused on input.email)" in report.lines()[2]


def branching() -> dict[str, Any]:
    """A graph that sends big orders to review and small ones straight to packing."""
    return graph(
        [
            TRIGGER,
            node("price", parameters={"total": "${input.total}"}),
            node("review", "notify", parameters={"total": "${price.output.total}"}),
            node("pack", "ship", parameters={"total": "${price.output.total}"}),
        ],
        [
            {"source": "start", "target": "price"},
            {"source": "price", "target": "review", "condition": "output.total > 100"},
            {"source": "price", "target": "pack", "condition": "output.total <= 100"},
        ],
    )


class TestBranches:
    async def test_a_changed_condition_takes_the_other_branch(self, recording: Recording) -> None:
        execution_id = await recording.run(branching(), {"total": 50})
        stricter = branching()
        stricter["connections"][1]["condition"] = "output.total > 10"
        stricter["connections"][2]["condition"] = "output.total <= 10"

        report = await replay(recording, execution_id, stricter)

        review, pack = report.steps["review"], report.steps["pack"]
        assert report.first_divergence == "review"
        assert review.divergence == (
            "branch taken differently: condition on price → review was false, now true"
        )
        assert (review.recorded_status, review.what_if_status) == ("SKIPPED", "COMPLETED")
        assert review.reason == "not run before"
        assert (pack.recorded_status, pack.what_if_status) == ("COMPLETED", "SKIPPED")
        assert pack.produced_by == "not run"
        assert pack.reason == "skipped: branch_not_taken"
        assert report.steps["start"].produced_by == "trigger"
        assert report.steps["price"].produced_by == "served"
        assert recording.log == ["ship"]

    async def test_the_same_branches_replay_exactly(self, recording: Recording) -> None:
        execution_id = await recording.run(branching(), {"total": 50})

        report = await replay(recording, execution_id, branching())

        assert report.matches
        assert report.steps["review"].produced_by == "not run"


def with_rollback(**ship: Any) -> dict[str, Any]:
    """Charge (refunded on rollback), then ship, which fails in the recorded runs."""
    shipping = {"id": "ship", "action": "ship", "parameters": {"to": "${input.to}"}}
    return workflow(
        step(
            "charge",
            "charge",
            parameters={"amount": "${input.amount}"},
            compensate={"action": "refund", "parameters": {"amount": "${charge.output.amount}"}},
        ),
        {**shipping, "retry": FAST_RETRY, **ship},
    )


class TestFailureAndRollback:
    async def record_failed_order(self, recording: Recording) -> str:
        recording.actions.register("ship", CarrierDown(recording.log), replace=True)
        return await recording.run(with_rollback(), {"amount": 5, "to": "Oslo"})

    async def test_a_recorded_failure_and_rollback_replay_as_recorded_at_once(
        self, recording: Recording
    ) -> None:
        execution_id = await self.record_failed_order(recording)
        assert recording.log == ["charge", "ship", "ship", "ship", "refund"]

        report = await replay(recording, execution_id, with_rollback())

        assert report.what_if_status is ExecutionStatus.ROLLED_BACK
        assert report.matches
        charge, ship = report.steps["charge"], report.steps["ship"]
        assert (charge.produced_by, charge.compensation) == ("served", "served")
        assert ship.what_if_error is not None
        assert ship.what_if_error["type"] == "ConnectionError"
        assert ship.what_if_error["message"] == "carrier down"
        starts = [e for e in report.history if e.type == "StepStarted" and e.step_id == "ship"]
        assert len(starts) == 1  # served as the final outcome: no retries, no backoff
        assert recording.log == ["charge", "ship", "ship", "ship", "refund"]
        assert "  charge: ROLLED_BACK → ROLLED_BACK, served, compensation served" in report.lines()

    async def test_a_fix_shows_where_the_run_departs_before_its_rollback_differs(
        self, recording: Recording
    ) -> None:
        execution_id = await self.record_failed_order(recording)
        fixed = with_rollback(parameters={"to": "${input.to}", "carrier": "backup"})

        report = await replay(recording, execution_id, fixed)

        assert report.what_if_status is ExecutionStatus.COMPLETED
        assert report.first_divergence == "ship"
        assert report.steps["charge"].divergence == "status changed: ROLLED_BACK → COMPLETED"
        assert report.steps["charge"].compensation is None

    async def test_a_changed_compensation_is_stubbed(self, recording: Recording) -> None:
        execution_id = await self.record_failed_order(recording)
        definition = with_rollback()
        definition["steps"][0]["compensate"]["parameters"]["reason"] = "carrier"

        report = await replay(recording, execution_id, definition)

        charge = report.steps["charge"]
        assert charge.compensation == "stubbed"
        assert charge.compensation_reason == "parameters changed: reason added"
        assert report.first_divergence == "charge"
        assert charge.divergence == "compensation stubbed: parameters changed: reason added"

    async def test_a_failed_compensation_is_served_as_it_failed(self, recording: Recording) -> None:
        recording.actions.register("refund", CarrierDown(recording.log), replace=True)
        execution_id = await self.record_failed_order(recording)

        report = await replay(recording, execution_id, with_rollback())

        assert report.recorded_status is ExecutionStatus.ROLLBACK_FAILED
        assert report.matches
        assert report.steps["charge"].what_if_status == "COMPENSATION_FAILED"

    async def test_a_compensation_not_run_before_is_stubbed(self, recording: Recording) -> None:
        execution_id = await order(recording)

        def carrier_down(**_parameters: Any) -> None:
            raise ConnectionError("carrier down")

        report = await replay(
            recording, execution_id, with_rollback(), stubs={"ship": carrier_down}
        )

        charge = report.steps["charge"]
        assert charge.compensation_reason == "not run before"
        assert report.first_divergence == "ship"
        assert report.what_if_status is ExecutionStatus.ROLLED_BACK


class TestStubs:
    async def test_stubs_by_step_id_win_over_stubs_by_action(self, recording: Recording) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "charge", parameters={"amount": 7})

        report = await replay(
            recording,
            execution_id,
            changed,
            stubs={"charge": {"amount": 7, "by": "step"}, "ship": {"by": "action"}},
        )

        assert report.steps["charge"].what_if_output == {"amount": 7, "by": "step"}
        assert report.steps["ship"].what_if_output == {"by": "action"}

    async def test_callable_stubs_get_the_parameters_and_may_be_async(
        self, recording: Recording
    ) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "charge", parameters={"amount": 7})
        seen: list[dict[str, Any]] = []

        def charge(**parameters: Any) -> dict[str, Any]:
            seen.append(parameters)
            return {"amount": parameters["amount"] * 2}

        async def ship(paid: int, to: str) -> dict[str, Any]:
            return {"label": f"{paid} to {to}"}

        report = await replay(
            recording, execution_id, changed, stubs={"charge": charge, "ship": ship}
        )

        assert seen == [{"amount": 7}]
        assert report.steps["ship"].what_if_output == {"label": "14 to Oslo"}
        assert report.steps["notify"].produced_by == "served"

    async def test_a_failing_stub_fails_its_step_at_once(self, recording: Recording) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "charge", parameters={"amount": 7}, retry=FAST_RETRY)

        def declined(**_parameters: Any) -> None:
            raise ValueError("card declined")

        report = await replay(recording, execution_id, changed, stubs={"charge": declined})

        charge = report.steps["charge"]
        assert report.what_if_status is ExecutionStatus.FAILED
        assert charge.what_if_error is not None
        assert charge.what_if_error["type"] == "ValueError"
        assert charge.what_if_error["message"] == "card declined"
        assert [e.type for e in report.history].count("StepStarted") == 1
        assert report.steps["ship"].divergence is not None

    async def test_a_stub_raising_a_non_retryable_error_keeps_its_type(
        self, recording: Recording
    ) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "charge", parameters={"amount": 7})

        async def declined(amount: int) -> None:
            raise NonRetryableError(f"{amount} declined", error_type="CardDeclined")

        report = await replay(recording, execution_id, changed, stubs={"charge": declined})

        error = report.steps["charge"].what_if_error
        assert error is not None
        assert (error["type"], error["message"]) == ("CardDeclined", "7 declined")


class TestRecordedInputAndRuns:
    async def test_inputs_provided_on_resume_are_merged_into_the_replayed_input(
        self, recording: Recording
    ) -> None:
        definition = workflow(step("greet", "notify", parameters={"to": "${input.name}"}))
        engine = WorkflowEngine(store=recording.store_url, actions=recording.actions)
        try:
            async with engine:
                paused = await engine.run_workflow(definition, {"lang": "nb"}, timeout=WAIT)
                await engine.resume_workflow(paused.execution_id, {"name": "Kari"})
                await engine.wait_for(paused.execution_id, timeout=WAIT)
        finally:
            engine.close()

        report = await replay(recording, paused.execution_id, definition)

        assert report.input == {"lang": "nb", "name": "Kari"}
        assert report.inputs_provided_later == ("name",)
        assert report.matches
        assert "provided later merged in (name)" in report.lines()[1]

    async def test_a_step_still_running_has_no_recorded_outcome_to_serve(
        self, recording: Recording
    ) -> None:
        gate = Gate()
        engine = WorkflowEngine(store=recording.store_url)
        engine.action("wait")(gate)
        try:
            async with engine:
                execution_id = await engine.start_workflow(workflow(step("hold", "wait")))
                await gate.reached()
                report = await asyncio.wait_for(
                    what_if(engine.ledger, execution_id, workflow(step("hold", "wait"))), WAIT
                )
                gate.open()
                await engine.wait_for(execution_id, timeout=WAIT)
        finally:
            engine.close()

        assert report.recorded_status is ExecutionStatus.RUNNING
        assert report.steps["hold"].reason == "not run before"
        assert len(gate.calls) == 1


class TestReport:
    async def test_to_dict_is_json_ready_and_lines_tell_the_story(
        self, recording: Recording
    ) -> None:
        execution_id = await order(recording)
        changed = edited(order_workflow(), "charge", parameters={"amount": 9})

        report = await replay(recording, execution_id, changed, stubs={"charge": {"amount": 9}})
        document = json.loads(json.dumps(report.to_dict()))
        lines = report.lines()

        assert document["first_divergence"] == "charge"
        assert document["what_if_status"] == "COMPLETED"
        assert document["outputs_changed"] == ["charge", "ship"]
        assert document["steps"]["charge"]["reason"] == "parameters changed: amount: 5 → 9"
        assert document["history"][0]["type"] == "ExecutionStarted"
        assert lines[0] == f"what-if replay of execution {execution_id}"
        assert lines[1] == "input: the execution's recorded input"
        assert lines[3] == "first divergence: charge (stubbed: parameters changed: amount: 5 → 9)"
        assert (
            "  charge: COMPLETED → COMPLETED, stubbed (parameters changed: amount: 5 → 9), "
            "output changed" in lines
        )

    async def test_lines_of_a_matching_replay(self, recording: Recording) -> None:
        execution_id = await order(recording)

        report = await replay(recording, execution_id, order_workflow())

        assert "first divergence: none, the replay matches the record" in report.lines()
        assert "  notify: COMPLETED → COMPLETED, served" in report.lines()


class TestChangeDescriptions:
    def test_changed_added_and_removed_keys(self) -> None:
        assert describe_change({"a": 1, "b": 2}, {"a": 3, "c": 4}) == (
            "a: 1 → 3, b removed, c added"
        )

    def test_long_values_and_many_changes_are_shortened(self) -> None:
        before = dict.fromkeys("abcde", 0)
        after = dict.fromkeys("abcde", "x" * 60)

        described = describe_change(before, after)

        assert described.endswith(" and 2 more")
        assert described.count("…") == 3


class TestSynchronousReplay:
    def test_outside_an_event_loop(self, recording: Recording) -> None:
        execution_id = asyncio.run(order(recording))

        report = replay_what_if(recording.ledger(), execution_id, order_workflow())

        assert report.matches

    async def test_inside_a_running_event_loop(self, recording: Recording) -> None:
        execution_id = await order(recording)

        report = replay_what_if(recording.ledger(), execution_id, order_workflow())

        assert report.matches
        assert recording.log == ["charge", "ship", "notify"]


class TestSourceStore:
    async def test_the_recorded_store_is_only_read(self, recording: Recording) -> None:
        execution_id = await order(recording)
        ledger = recording.ledger()
        history = ledger.history(execution_id)

        await replay(recording, execution_id, without(order_workflow(), "ship"))
        await replay(recording, execution_id, order_workflow())

        fresh = recording.ledger()
        assert fresh.history(execution_id) == history
        assert [state.execution_id for state in fresh.list()] == [execution_id]
        verified = fresh.verify()
        assert verified.ok
        assert verified.executions == 1
