"""``WorkflowEngine``: construction, stores, action registration, starting and stopping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from flowledger import (
    ActionRegistry,
    ExecutionStatus,
    FlowledgerError,
    Ledger,
    RetryPolicy,
    StepStatus,
    WorkflowEngine,
)
from flowledger.engine.ledger_app import LedgerApplication
from tests.unit.conftest import WAIT, Gate, step, wait, workflow

ACCEPTED_FORMS = ("memory://", "sqlite:///", "postgresql://")


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flowledger-writer"]


class TestWorkflowEngineInit:
    async def test_defaults_bound_five_steps_and_register_the_built_in_actions(
        self, engine: WorkflowEngine
    ) -> None:
        assert engine.max_concurrent_steps == 5
        assert {"noop", "echo", "sleep", "fail"} <= set(engine.actions.names())

        state = await engine.run_workflow(
            workflow(
                step("nothing", "noop", parameters={"ignored": 1}),
                step("same", "echo", parameters={"a": [1, 2]}),
                step("nap", "sleep", parameters={"seconds": 0}),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs == {"nothing": {}, "same": {"a": [1, 2]}, "nap": {"slept": 0}}

    async def test_the_built_in_fail_action_fails_its_step(self, engine: WorkflowEngine) -> None:
        state = await engine.run_workflow(
            workflow(
                step(
                    "boom",
                    "fail",
                    parameters={"message": "on purpose", "retryable": False},
                    retry={"max_attempts": 3},
                )
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.FAILED
        assert state.steps["boom"].attempts == 1
        assert state.error is not None
        assert "on purpose" in state.error["message"]

    @pytest.mark.parametrize(
        "url",
        ["mysql://localhost/db", "sqlite://relative.db", "no-scheme", "", "memory://extra"],
    )
    def test_a_bad_store_url_is_refused_naming_the_accepted_forms(self, url: str) -> None:
        with pytest.raises(FlowledgerError) as raised:
            WorkflowEngine(store=url)

        message = str(raised.value)
        for form in ACCEPTED_FORMS:
            assert form in message

    async def test_flowledger_store_environment_variable_chooses_the_default_store(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        url = f"sqlite:///{tmp_path}/from-env.db"
        monkeypatch.setenv("FLOWLEDGER_STORE", url)
        engine = WorkflowEngine()
        try:
            async with engine:
                state = await engine.run_workflow(workflow(step("one")), timeout=WAIT)
        finally:
            engine.close()

        assert (tmp_path / "from-env.db").exists()
        with Ledger(url) as ledger:
            assert ledger.get(state.execution_id).status is ExecutionStatus.COMPLETED

    async def test_engine_action_registers_async_and_plain_functions(
        self, engine: WorkflowEngine
    ) -> None:
        @engine.action("double")
        async def double(n: int) -> dict[str, int]:
            return {"n": n * 2}

        @engine.action()
        def shout(text: str) -> dict[str, str]:
            return {"text": text.upper()}

        state = await engine.run_workflow(
            workflow(
                step("d", "double", parameters={"n": "${input.n}"}),
                step("s", "shout", parameters={"text": "${input.word}"}),
            ),
            {"n": 21, "word": "hi"},
            timeout=WAIT,
        )

        assert "shout" in engine.actions  # registered under the function's name
        assert state.outputs == {"d": {"n": 42}, "s": {"text": "HI"}}

    async def test_an_action_registry_passed_in_is_used(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        registry = ActionRegistry()

        @registry.action("greet")
        async def greet(name: str) -> str:
            return f"hello {name}"

        async with make_engine(actions=registry) as engine:
            state = await engine.run_workflow(
                workflow(step("g", "greet", parameters={"name": "${input.name}"})),
                {"name": "ann"},
                timeout=WAIT,
            )

        assert state.outputs == {"g": "hello ann"}

    async def test_retry_policy_given_to_the_engine_applies_to_steps_without_one(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        calls: list[int] = []
        policy = RetryPolicy(
            max_attempts=2,
            initial_interval=0.01,
            backoff=1.0,
            max_interval=0.01,
            jitter=0.0,
            non_retryable=(),
        )
        async with make_engine(retry_policy=policy) as engine:

            @engine.action("flaky")
            async def flaky() -> str:
                calls.append(1)
                raise ConnectionError("down")

            state = await engine.run_workflow(workflow(step("f", "flaky")), timeout=WAIT)

        assert state.status is ExecutionStatus.FAILED
        assert state.steps["f"].attempts == 2
        assert len(calls) == 2

    async def test_engine_ledger_reads_what_the_engine_recorded(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(
            workflow(step("one", parameters={"x": 1}), workflow_id="reading"), timeout=WAIT
        )

        assert isinstance(engine.ledger, Ledger)
        assert engine.ledger.get(state.execution_id) == state
        listed = engine.ledger.list(workflow_id="reading")
        assert [s.execution_id for s in listed] == [state.execution_id]
        assert engine.ledger.history(state.execution_id)[-1].type == "ExecutionCompleted"

    async def test_async_with_starts_the_engine_and_stops_it_cleanly(
        self, make_engine: Callable[..., WorkflowEngine], store_url: str
    ) -> None:
        before = len(writer_threads())
        engine = make_engine()
        async with engine as entered:
            assert entered is engine
            assert len(writer_threads()) == before + 1
            state = await engine.run_workflow(workflow(step("one")), timeout=WAIT)

        assert len(writer_threads()) == before
        with Ledger(store_url) as ledger:
            assert ledger.get(state.execution_id).status is ExecutionStatus.COMPLETED

    async def test_start_and_stop_are_idempotent(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        before = len(writer_threads())
        engine = make_engine()
        await engine.start()
        await engine.start()
        assert len(writer_threads()) == before + 1
        state = await engine.run_workflow(workflow(step("one")), timeout=WAIT)
        await engine.stop()
        await engine.stop()

        assert len(writer_threads()) == before
        assert state.status is ExecutionStatus.COMPLETED

    async def test_an_engine_started_again_after_stop_runs_workflows(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        engine = make_engine()
        await engine.start()
        await engine.stop()
        await engine.start()

        state = await engine.run_workflow(workflow(step("one", parameters={"a": 1})), timeout=WAIT)

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs == {"one": {"a": 1}}

    async def test_an_engine_started_again_after_stop_serves_live_subscriptions(
        self, make_engine: Callable[..., WorkflowEngine]
    ) -> None:
        engine = make_engine()
        await engine.start()
        await engine.stop()
        await engine.start()
        gate = Gate()
        engine.action("held")(gate)
        execution_id = await engine.start_workflow(workflow(step("h", "held")))
        await gate.reached()

        async def follow() -> list[str]:
            seen: list[str] = []
            async for note in engine.subscribe(execution_id):
                seen.append(note.status)
                if note.status == "STEP_RUNNING":
                    gate.open()
            return seen

        seen = await wait(follow())

        assert seen[-1] == "COMPLETED"

    async def test_an_action_shadowing_a_built_in_is_refused_before_anything_is_recorded(
        self, engine: WorkflowEngine
    ) -> None:
        async def my_echo(**parameters: Any) -> dict[str, Any]:
            return parameters

        try:
            engine.action("echo")(my_echo)
        except FlowledgerError:
            pass  # refused at registration: the mistake is reported where it is made
        else:
            with pytest.raises(FlowledgerError):
                await engine.start_workflow(workflow(step("e", "echo")), execution_id="shadow")

        assert engine.ledger.list() == []

    async def test_engines_on_separate_files_do_not_see_each_others_executions(
        self, make_engine: Callable[..., WorkflowEngine], tmp_path: Any
    ) -> None:
        (tmp_path / "other").mkdir()
        async with (
            make_engine() as first,
            make_engine(store=f"sqlite:///{tmp_path}/other/ledger.db") as second,
        ):
            state = await first.run_workflow(workflow(step("one")), timeout=WAIT)

            assert second.ledger.list() == []
            assert first.ledger.get(state.execution_id).steps["one"].status is StepStatus.COMPLETED

    def test_max_concurrent_steps_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            WorkflowEngine(store="memory://", max_concurrent_steps=0)


class TestSharedApplication:
    async def test_two_engines_share_one_memory_store_through_its_application(self) -> None:
        application = LedgerApplication("memory://")
        first = WorkflowEngine(application=application)
        async with first:
            state = await first.run_workflow({"id": "w", "steps": [{"id": "a", "action": "noop"}]})
        second = WorkflowEngine(application=application, recover=False)
        assert (await second.get_workflow_status(state.execution_id)).status == "COMPLETED"
        second.close()

    def test_a_store_and_an_application_together_are_refused(self) -> None:
        application = LedgerApplication("memory://")
        with pytest.raises(ValueError, match="not both"):
            WorkflowEngine("memory://", application=application)
        application.close()
