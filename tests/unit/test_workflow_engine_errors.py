"""``WorkflowEngine``: retries, timeouts, failures, compensation and odd action results."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

from flowledger import ExecutionStatus, NonRetryableError, StepStatus, WorkflowEngine
from tests.unit.conftest import (
    FAST_RETRY,
    NO_RETRY,
    WAIT,
    Recorder,
    entries,
    statuses,
    step,
    types_of,
    workflow,
)


class CardDeclinedError(Exception):
    """A business error no retry can fix."""


class Flaky:
    """Fails the first ``failures`` calls with ``error``, then returns ``{"ok": True}``."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("network down")
        self.calls = 0

    async def __call__(self) -> dict[str, bool]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return {"ok": True}


def compensable(step_id: str, **options: Any) -> dict[str, Any]:
    """A step whose compensation ``undo`` receives its own output's ``id``."""
    return step(
        step_id,
        parameters={"id": step_id},
        compensate={"action": "undo", "parameters": {"id": f"${{{step_id}.output.id}}"}},
        **options,
    )


def failing(step_id: str = "boom", **options: Any) -> dict[str, Any]:
    return step(step_id, "fail", parameters={"message": "it broke", "retryable": False}, **options)


class TestErrorHandling:
    async def test_a_step_retried_with_backoff_completes_on_its_third_attempt(
        self, engine: WorkflowEngine
    ) -> None:
        flaky = Flaky(failures=2)
        engine.action("flaky")(flaky)

        state = await engine.run_workflow(
            workflow(step("f", "flaky", retry={**FAST_RETRY, "max_attempts": 4})), timeout=WAIT
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.steps["f"].attempts == 3
        assert state.steps["f"].error is None
        assert state.outputs == {"f": {"ok": True}}
        assert flaky.calls == 3
        history = engine.ledger.history(state.execution_id)
        failed = entries(history, "StepFailed", "f")
        scheduled = entries(history, "StepRetryScheduled", "f")
        starts = entries(history, "StepStarted", "f")
        assert [e.data["attempt"] for e in failed] == [1, 2]
        assert all(e.data["retryable"] for e in failed)
        assert [e.data["next_attempt"] for e in scheduled] == [2, 3]
        waits = [
            (as_time(e.data["not_before"]) - f.timestamp).total_seconds()
            for e, f in zip(scheduled, failed, strict=True)
        ]
        assert waits[0] >= 0.01 - 1e-3
        assert waits[1] > waits[0]  # the interval grows by the backoff
        for retry, start in zip(scheduled, starts[1:], strict=True):
            assert start.timestamp >= as_time(retry.data["not_before"])

    async def test_max_interval_caps_the_growing_wait(self, engine: WorkflowEngine) -> None:
        engine.action("flaky")(Flaky(failures=3))
        retry = {"max_attempts": 4, "initial_interval": 0.01, "backoff": 10, "max_interval": 0.02}

        state = await engine.run_workflow(
            workflow(step("f", "flaky", retry={**retry, "jitter": 0})), timeout=WAIT
        )

        assert state.status is ExecutionStatus.COMPLETED
        history = engine.ledger.history(state.execution_id)
        waits = [
            round((as_time(r.data["not_before"]) - f.timestamp).total_seconds(), 6)
            for r, f in zip(
                entries(history, "StepRetryScheduled"), entries(history, "StepFailed"), strict=True
            )
        ]
        assert waits == [0.01, 0.02, 0.02]

    async def test_continue_on_error_waits_for_the_last_attempt_before_going_on(
        self, engine: WorkflowEngine
    ) -> None:
        flaky = Flaky(failures=10)
        engine.action("flaky")(flaky)
        after = Recorder("after")
        engine.action("after")(after)

        state = await engine.run_workflow(
            workflow(
                step("f", "flaky", retry=FAST_RETRY, continue_on_error=True),
                step("next", "after", parameters={"attempts_seen": "${f.status}"}),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert flaky.calls == 3
        assert after.calls == [{"attempts_seen": "FAILED"}]
        history = engine.ledger.history(state.execution_id)
        last_failure = entries(history, "StepFailed", "f")[-1]
        assert last_failure.data["attempt"] == 3
        assert entries(history, "StepStarted", "next")[0].version > last_failure.version

    async def test_an_error_type_listed_as_non_retryable_fails_at_once(
        self, engine: WorkflowEngine
    ) -> None:
        flaky = Flaky(failures=5, error=CardDeclinedError("declined"))
        engine.action("charge")(flaky)
        retry = {**FAST_RETRY, "max_attempts": 5, "non_retryable": ["CardDeclinedError"]}

        state = await engine.run_workflow(workflow(step("c", "charge", retry=retry)), timeout=WAIT)

        assert state.status is ExecutionStatus.FAILED
        assert state.steps["c"].attempts == 1
        assert flaky.calls == 1
        assert state.error is not None
        assert state.error["type"] == "CardDeclinedError"
        assert "StepRetryScheduled" not in types_of(engine.ledger.history(state.execution_id))

    async def test_non_retryable_error_fails_at_once(self, engine: WorkflowEngine) -> None:
        flaky = Flaky(failures=5, error=NonRetryableError("account closed"))
        engine.action("charge")(flaky)

        state = await engine.run_workflow(
            workflow(step("c", "charge", retry={**FAST_RETRY, "max_attempts": 5})), timeout=WAIT
        )

        assert state.status is ExecutionStatus.FAILED
        assert flaky.calls == 1
        assert state.steps["c"].attempts == 1
        assert state.steps["c"].error is not None
        assert state.steps["c"].error["retryable"] is False
        assert state.steps["c"].error["message"] == "account closed"

    async def test_an_unknown_action_fails_without_retry_listing_the_registered_ones(
        self, engine: WorkflowEngine
    ) -> None:
        engine.action("charge_card")(Recorder("charge_card"))

        state = await engine.run_workflow(
            workflow(step("c", "charge_crad", retry={**FAST_RETRY, "max_attempts": 5})),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.FAILED
        error = state.steps["c"].error
        assert error is not None
        assert state.steps["c"].attempts == 1
        assert error["retryable"] is False
        assert "charge_crad" in error["message"]
        for name in ("charge_card", "echo", "fail", "noop", "sleep"):
            assert name in error["message"]

    async def test_a_step_past_its_timeout_is_recorded_as_timed_out(
        self, engine: WorkflowEngine
    ) -> None:
        never = asyncio.Event()

        @engine.action("hang")
        async def hang() -> None:
            await asyncio.wait_for(never.wait(), WAIT)

        state = await engine.run_workflow(
            workflow(step("h", "hang", timeout=0.05, retry=NO_RETRY)), timeout=WAIT
        )

        assert state.status is ExecutionStatus.FAILED
        error = state.steps["h"].error
        assert error is not None
        assert error["type"] == "StepTimeoutError"
        timed_out = entries(engine.ledger.history(state.execution_id), "StepTimedOut", "h")
        assert [(e.data["attempt"], e.data["timeout"]) for e in timed_out] == [(1, 0.05)]

    async def test_a_timed_out_attempt_is_retried(self, engine: WorkflowEngine) -> None:
        never = asyncio.Event()
        calls: list[int] = []

        @engine.action("slow_once")
        async def slow_once() -> str:
            calls.append(1)
            if len(calls) == 1:
                await asyncio.wait_for(never.wait(), WAIT)
            return "fast"

        state = await engine.run_workflow(
            workflow(step("s", "slow_once", timeout=0.05, retry=FAST_RETRY)), timeout=WAIT
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.steps["s"].attempts == 2
        assert state.outputs == {"s": "fast"}

    async def test_a_plain_action_past_its_timeout_times_out_without_blocking(
        self, engine: WorkflowEngine
    ) -> None:
        release = threading.Event()

        @engine.action("stuck")
        def stuck() -> str:
            release.wait(WAIT)
            return "late"

        try:
            state = await engine.run_workflow(
                workflow(step("s", "stuck", timeout=0.05, retry=NO_RETRY)), timeout=WAIT
            )
        finally:
            release.set()  # let the worker thread go

        assert state.status is ExecutionStatus.FAILED
        assert state.steps["s"].error is not None
        assert state.steps["s"].error["type"] == "StepTimeoutError"
        assert state.steps["s"].output is None

    async def test_a_failure_without_compensation_fails_the_execution_with_its_error(
        self, engine: WorkflowEngine
    ) -> None:
        after = Recorder("after")
        engine.action("after")(after)

        state = await engine.run_workflow(
            workflow(step("first"), failing(), step("last", "after")), timeout=WAIT
        )

        assert state.status is ExecutionStatus.FAILED
        assert state.error is not None
        assert state.error["message"] == "it broke"
        assert state.error == state.steps["boom"].error
        assert statuses(state) == {"first": "COMPLETED", "boom": "FAILED", "last": "CANCELLED"}
        assert after.calls == []
        failed = entries(engine.ledger.history(state.execution_id), "ExecutionFailed")
        assert failed[0].data["step_id"] == "boom"

    async def test_a_failure_compensates_completed_steps_in_reverse_completion_order(
        self, engine: WorkflowEngine
    ) -> None:
        undone: list[str] = []

        @engine.action("undo")
        async def undo(id: str) -> dict[str, str]:
            undone.append(id)
            return {"undone": id}

        state = await engine.run_workflow(
            workflow(
                compensable("a"),
                compensable("b"),
                step("plain"),
                compensable("c"),
                failing(),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.ROLLED_BACK
        assert undone == ["c", "b", "a"]
        assert statuses(state) == {
            "a": "ROLLED_BACK",
            "b": "ROLLED_BACK",
            "plain": "COMPLETED",
            "c": "ROLLED_BACK",
            "boom": "FAILED",
        }
        assert state.steps["b"].compensation_output == {"undone": "b"}
        history = engine.ledger.history(state.execution_id)
        assert [e.step_id for e in entries(history, "StepRolledBack")] == ["c", "b", "a"]
        assert types_of(history)[-1] == "ExecutionRolledBack"

    async def test_parallel_completions_are_compensated_in_reverse_of_when_they_finished(
        self, engine: WorkflowEngine
    ) -> None:
        undone: list[str] = []
        order = {"first": asyncio.Event(), "second": asyncio.Event()}

        @engine.action("undo")
        async def undo(id: str) -> None:
            undone.append(id)

        @engine.action("ordered")
        async def ordered(id: str, after: str | None = None) -> dict[str, str]:
            if after is not None:
                await asyncio.wait_for(order[after].wait(), WAIT)
            order[id].set()
            return {"id": id}

        def parallel(step_id: str, after: str | None) -> dict[str, Any]:
            return step(
                step_id,
                "ordered",
                parameters={"id": step_id, "after": after},
                depends_on=[],
                compensate={"action": "undo", "parameters": {"id": f"${{{step_id}.output.id}}"}},
            )

        # Listed in the opposite order to the one they finish in.
        state = await engine.run_workflow(
            workflow(
                parallel("second", "first"),
                parallel("first", None),
                failing(depends_on=["first", "second"]),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.ROLLED_BACK
        assert undone == ["second", "first"]

    async def test_a_failing_compensation_ends_the_execution_rollback_failed(
        self, engine: WorkflowEngine
    ) -> None:
        attempts: list[str] = []

        @engine.action("undo")
        async def undo(id: str) -> None:
            attempts.append(id)
            if id == "b":
                raise RuntimeError("cannot undo b")

        state = await engine.run_workflow(
            workflow(compensable("a"), compensable("b"), failing()), timeout=WAIT
        )

        assert state.status is ExecutionStatus.ROLLBACK_FAILED
        assert attempts == ["b"]  # the rollback stops at the failed compensation
        assert state.steps["b"].status is StepStatus.COMPENSATION_FAILED
        assert state.steps["a"].status is StepStatus.COMPLETED
        assert state.error is not None
        assert "cannot undo b" in state.error["message"]
        assert types_of(engine.ledger.history(state.execution_id))[-1] == "RollbackFailed"

    async def test_an_unknown_compensation_action_ends_the_execution_rollback_failed(
        self, engine: WorkflowEngine
    ) -> None:
        state = await engine.run_workflow(
            workflow(step("reserve", compensate={"action": "no_such_undo"}), failing()),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.ROLLBACK_FAILED
        assert state.error is not None
        assert "no_such_undo" in state.error["message"]

    async def test_continue_on_error_lets_downstream_steps_run(
        self, engine: WorkflowEngine
    ) -> None:
        after = Recorder("after")
        engine.action("after")(after)

        state = await engine.run_workflow(
            workflow(
                failing(continue_on_error=True),
                step("last", "after", parameters={"before": "${boom.status}"}),
            ),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert statuses(state) == {"boom": "FAILED", "last": "COMPLETED"}
        assert after.calls == [{"before": "FAILED"}]
        assert "boom" not in state.outputs

    async def test_an_output_that_looks_like_an_error_is_just_an_output(
        self, engine: WorkflowEngine
    ) -> None:
        returned = {"status": "error", "error": "nothing wrong", "code": 500}

        @engine.action("odd")
        async def odd() -> dict[str, Any]:
            return returned

        state = await engine.run_workflow(
            workflow(step("o", "odd"), step("next", parameters={"got": "${o.output.code}"})),
            timeout=WAIT,
        )

        assert state.status is ExecutionStatus.COMPLETED
        assert state.outputs["o"] == returned
        assert state.steps["o"].error is None
        assert state.outputs["next"] == {"got": 500}

    async def test_an_output_that_is_not_json_fails_the_step_without_retry(
        self, engine: WorkflowEngine
    ) -> None:
        calls: list[int] = []

        @engine.action("weird")
        async def weird() -> dict[str, Any]:
            calls.append(1)
            return {"when": {"at": datetime(2024, 1, 1)}}

        state = await engine.run_workflow(
            workflow(step("w", "weird", retry={**FAST_RETRY, "max_attempts": 5})), timeout=WAIT
        )

        assert state.status is ExecutionStatus.FAILED
        assert calls == [1]
        error = state.steps["w"].error
        assert error is not None
        assert error["retryable"] is False
        assert "$.when.at" in error["message"]

    async def test_a_plain_action_runs_in_a_thread_without_blocking_the_loop(
        self, engine: WorkflowEngine
    ) -> None:
        loop_thread = threading.get_ident()
        unblocked = threading.Event()
        threads: list[int] = []

        @engine.action("blocking")
        def blocking() -> str:
            threads.append(threading.get_ident())
            # Only returns True if the loop keeps running the other step meanwhile.
            return "unblocked" if unblocked.wait(WAIT) else "loop was blocked"

        @engine.action("unblock")
        async def unblock() -> str:
            unblocked.set()
            return "set"

        state = await engine.run_workflow(
            workflow(
                step("b", "blocking", depends_on=[]),
                step("u", "unblock", depends_on=[]),
            ),
            timeout=WAIT * 2,
        )

        assert state.outputs == {"b": "unblocked", "u": "set"}
        assert threads
        assert threads[0] != loop_thread

    async def test_retries_exhausted_fail_the_execution_with_the_last_error(
        self, engine: WorkflowEngine
    ) -> None:
        flaky = Flaky(failures=10)
        engine.action("flaky")(flaky)

        state = await engine.run_workflow(
            workflow(step("f", "flaky", retry=FAST_RETRY)), timeout=WAIT
        )

        assert state.status is ExecutionStatus.FAILED
        assert flaky.calls == 3
        assert state.steps["f"].attempts == 3
        assert state.error is not None
        assert state.error["type"] == "ConnectionError"
        history = engine.ledger.history(state.execution_id)
        assert len(entries(history, "StepRetryScheduled", "f")) == 2


def as_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
