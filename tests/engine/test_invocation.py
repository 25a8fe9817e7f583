"""One attempt of an action: async or in a thread, timeouts, cancellation, outcome as data."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowledger.engine import invocation
from flowledger.engine.invocation import (
    MAX_MESSAGE_CHARS,
    Outcome,
    current_step_id,
    error_data,
    invoke,
)
from flowledger.errors import (
    DefinitionError,
    DefinitionProblem,
    NonRetryableError,
    SchemaValidationError,
    StepTimeoutError,
    UnknownActionError,
)


async def run(action: Any, timeout: float | None = None, **parameters: Any) -> Outcome:
    return await invoke(action, parameters, timeout=timeout, step_id="step")


# -- running -----------------------------------------------------------------------------


async def test_an_async_action_gets_keyword_arguments_and_its_output_is_recorded() -> None:
    async def charge(amount: int, card: str) -> dict[str, Any]:
        return {"charged": amount, "card": card[-4:]}

    outcome = await run(charge, amount=5, card="4242424242424242")

    assert outcome == Outcome(
        ok=True,
        output={"charged": 5, "card": "4242"},
        error=None,
        timed_out=False,
        duration_ms=outcome.duration_ms,
    )
    assert not outcome.retryable


async def test_async_actions_run_on_the_loop_thread() -> None:
    loop_thread = threading.get_ident()

    async def where() -> int:
        return threading.get_ident()

    assert (await run(where)).output == loop_thread


async def test_a_sync_action_runs_in_another_thread() -> None:
    loop_thread = threading.get_ident()

    def where(label: str) -> dict[str, Any]:
        return {"thread": threading.get_ident(), "label": label}

    outcome = await run(where, label="x")

    output = outcome.output
    assert outcome.ok
    assert output is not None
    assert output["label"] == "x"
    assert output["thread"] != loop_thread


async def test_async_actions_are_not_sent_to_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(action: Any, parameters: Any) -> Any:
        raise AssertionError("an async action was sent to a worker thread")

    monkeypatch.setattr(invocation, "_call", no_thread)

    async def quick(value: int) -> int:
        return value

    class Quick:
        async def __call__(self, value: int) -> int:
            return value

    assert (await run(quick, value=1)).output == 1
    assert (await run(functools.partial(quick, value=2))).output == 2
    assert (await run(Quick(), value=3)).output == 3


async def test_async_callable_objects_and_partials_are_awaited_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    class Where:
        async def __call__(self, offset: int) -> int:
            return threading.get_ident() + offset

    async def where(offset: int) -> int:
        return threading.get_ident() + offset

    assert (await run(Where(), offset=1)).output == loop_thread + 1
    assert (await run(functools.partial(where, offset=2))).output == loop_thread + 2


async def test_an_awaitable_returned_by_a_plain_function_is_awaited() -> None:
    async def later(value: int) -> dict[str, int]:
        return {"value": value}

    def start(value: int) -> Any:
        return later(value)

    assert (await run(start, value=3)).output == {"value": 3}


async def test_a_builtin_without_a_signature_is_simply_called() -> None:
    assert (await run(dict, a=1)).output == {"a": 1}


# -- outputs -----------------------------------------------------------------------------


async def test_outputs_are_normalised_as_a_replay_reads_them() -> None:
    def produce() -> Any:
        return {"pair": (1, 2), "b": {3: "three"}, "a": [("x",)]}

    outcome = await run(produce)

    assert outcome.output == {"a": [["x"]], "b": {"3": "three"}, "pair": [1, 2]}
    assert list(outcome.output) == ["a", "b", "pair"]


async def test_a_tuple_output_becomes_a_list() -> None:
    async def pair() -> tuple[int, str]:
        return (1, "a")

    assert (await run(pair)).output == [1, "a"]


async def test_an_output_holding_non_json_names_the_type_and_where_it_is() -> None:
    def produce() -> Any:
        return {"items": [1, {"tags": {"a", "b"}}]}

    outcome = await run(produce)

    assert not outcome.ok
    assert outcome.output is None
    assert outcome.error == {
        "type": "OutputNotSerializableError",
        "message": "output of step 'step' is not JSON: $.items[1].tags is of type builtins.set",
        "retryable": False,
        "qualified_type": "flowledger.errors.OutputNotSerializableError",
    }


class Opaque:
    pass


def circular() -> Any:
    value: dict[str, Any] = {"ok": 1}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    ("output", "where"),
    [
        (Opaque(), "$ is of type tests.engine.test_invocation.Opaque"),
        (b"bytes", "$ is of type builtins.bytes"),
        ({"n": float("nan")}, "$.n is the float nan"),
        ([1.5, float("inf")], "$[1] is the float inf"),
        ({"deep": {(1, 2): "tuple key"}}, "$.deep is a mapping with a key of type tuple"),
        ({1: "a", "b": 2}, "$ is a mapping mixing text and non-text keys"),
        (circular(), "$.self is a circular reference"),
    ],
)
async def test_non_json_outputs(output: Any, where: str) -> None:
    outcome = await run(lambda: output)

    assert outcome.error is not None
    assert outcome.error["type"] == "OutputNotSerializableError"
    assert outcome.error["message"].endswith(where)
    assert outcome.error["retryable"] is False


def test_an_unexplained_serialisation_failure_still_names_the_step() -> None:
    with pytest.raises(invocation.OutputNotSerializableError) as caught:
        invocation._normalise({1.5: "a", None: "b"}, "step")  # keys JSON cannot sort

    assert caught.value.path == "$"


# -- errors as data ----------------------------------------------------------------------


class CardDeclined(Exception):
    pass


async def test_an_exception_becomes_retryable_error_data() -> None:
    async def charge() -> None:
        raise CardDeclined("card 1234 declined")

    outcome = await run(charge)

    assert not outcome.ok
    assert not outcome.timed_out
    assert outcome.retryable
    assert outcome.error == {
        "type": "CardDeclined",
        "message": "card 1234 declined",
        "retryable": True,
        "qualified_type": "tests.engine.test_invocation.CardDeclined",
    }


async def test_a_sync_actions_exception_becomes_error_data() -> None:
    def parse(text: str) -> int:
        return int(text)

    outcome = await run(parse, text="x")

    assert outcome.error is not None
    assert outcome.error["type"] == "ValueError"
    assert outcome.error["qualified_type"] == "builtins.ValueError"
    assert outcome.error["message"] == "invalid literal for int() with base 10: 'x'"
    assert outcome.error["retryable"] is True


async def test_non_retryable_error_uses_its_error_type() -> None:
    async def charge() -> None:
        raise NonRetryableError("insufficient funds", error_type="InsufficientFunds")

    outcome = await run(charge)

    assert outcome.error is not None
    assert outcome.error["type"] == "InsufficientFunds"
    assert outcome.error["message"] == "insufficient funds"
    assert outcome.error["retryable"] is False
    assert not outcome.retryable


async def test_subclasses_of_non_retryable_error_keep_their_name() -> None:
    class Gone(NonRetryableError):
        pass

    async def fetch() -> None:
        raise Gone("404")

    outcome = await run(fetch)

    assert outcome.error is not None
    assert (outcome.error["type"], outcome.error["retryable"]) == ("Gone", False)


@pytest.mark.parametrize(
    "error",
    [
        SchemaValidationError("input", [{"path": "$", "message": "bad"}]),
        UnknownActionError("nested", ["a"]),
        DefinitionError([DefinitionProblem("$", "bad")]),
    ],
)
async def test_errors_retrying_cannot_fix_are_not_retryable(error: Exception) -> None:
    async def action() -> None:
        raise error

    outcome = await run(action)

    assert outcome.error is not None
    assert outcome.error["type"] == type(error).__name__
    assert outcome.error["retryable"] is False


async def test_parameters_that_do_not_fit_the_signature_fail_at_once() -> None:
    called = False

    def charge(amount: int, card: str, currency: str = "EUR") -> None:
        nonlocal called
        called = True

    outcome = await run(charge, amount=5, crad="4242")

    assert not called
    assert outcome.error is not None
    assert outcome.error["type"] == "ActionSignatureError"
    assert outcome.error["retryable"] is False
    assert outcome.error["message"] == (
        "parameters do not fit action "
        "test_parameters_that_do_not_fit_the_signature_fail_at_once.<locals>.charge: "
        "unexpected parameter(s) crad; missing required parameter(s) card"
    )
    assert "4242" not in outcome.error["message"]


async def test_keyword_catch_alls_accept_any_parameter() -> None:
    async def anything(required: int, **rest: Any) -> dict[str, Any]:
        return {"rest": rest}

    assert (await run(anything, required=1, extra=2)).output == {"rest": {"extra": 2}}
    outcome = await run(anything, extra=2)
    assert outcome.error is not None
    assert outcome.error["message"].endswith(": missing required parameter(s) required")


async def test_positional_only_parameters_cannot_be_given_by_name() -> None:
    async def strict(amount: int, /) -> int:
        return amount

    outcome = await run(strict, amount=1)

    assert outcome.error is not None
    assert outcome.error["type"] == "ActionSignatureError"
    assert "amount" in outcome.error["message"]


async def test_a_type_error_inside_the_action_is_an_ordinary_retryable_error() -> None:
    async def buggy(amount: int) -> int:
        return amount + "1"  # type: ignore[operator]

    outcome = await run(buggy, amount=1)

    assert outcome.error is not None
    assert (outcome.error["type"], outcome.error["retryable"]) == ("TypeError", True)


async def test_unhashable_callables_are_checked_too() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return False

        def __call__(self, amount: int) -> int:
            return amount

    assert (await run(Unhashable(), amount=2)).output == 2
    outcome = await run(Unhashable(), wrong=2)
    assert outcome.error is not None
    assert outcome.error["type"] == "ActionSignatureError"


async def test_long_messages_are_cut() -> None:
    async def chatty() -> None:
        raise RuntimeError("x" * (MAX_MESSAGE_CHARS + 10))

    outcome = await run(chatty)

    assert outcome.error is not None
    assert outcome.error["message"] == "x" * MAX_MESSAGE_CHARS + "... [10 more characters]"


def test_an_unprintable_exception_still_becomes_data() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    data = error_data(Broken())

    assert data["type"] == "Broken"
    assert data["message"] == "<Broken with an unprintable message>"


# -- schemas -----------------------------------------------------------------------------


async def test_an_input_schema_failure_stops_the_call() -> None:
    called = False

    async def charge(amount: Any) -> None:
        nonlocal called
        called = True

    outcome = await invoke(
        charge,
        {"amount": "5"},
        timeout=None,
        step_id="pay",
        input_schema={"type": "object", "properties": {"amount": {"type": "integer"}}},
    )

    assert not called
    assert outcome.error is not None
    assert outcome.error["type"] == "SchemaValidationError"
    assert outcome.error["retryable"] is False
    assert outcome.error["message"].startswith("input of step 'pay' does not match")
    assert "$.amount" in outcome.error["message"]


async def test_the_normalised_output_is_checked_against_the_output_schema() -> None:
    schema = {"type": "object", "properties": {"pair": {"type": "array"}}, "required": ["pair"]}

    async def good() -> dict[str, Any]:
        return {"pair": (1, 2)}  # a tuple: an array once normalised

    async def bad() -> dict[str, Any]:
        return {}

    ok = await invoke(good, {}, timeout=None, step_id="s", output_schema=schema)
    failed = await invoke(bad, {}, timeout=None, step_id="s", output_schema=schema)

    assert ok.output == {"pair": [1, 2]}
    assert failed.error is not None
    assert failed.error["type"] == "SchemaValidationError"
    assert failed.error["message"].startswith("output of step 's' does not match")


# -- timeouts ----------------------------------------------------------------------------


async def test_a_timed_out_async_action_is_cancelled() -> None:
    saw_cancellation = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            saw_cancellation.set()
            raise

    outcome = await run(slow, timeout=0.05)

    assert saw_cancellation.is_set()
    assert outcome.timed_out
    assert not outcome.ok
    assert outcome.error == {
        "type": "StepTimeoutError",
        "message": str(StepTimeoutError("step", 0.05)),
        "retryable": True,
        "qualified_type": "flowledger.errors.StepTimeoutError",
    }
    assert outcome.duration_ms >= 50


async def test_a_timed_out_sync_action_returns_while_its_thread_runs_on() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        release.wait(10)
        finished.set()
        return "late"

    try:
        outcome = await run(stuck, timeout=0.05)

        assert outcome.timed_out
        assert outcome.error is not None
        assert outcome.error["type"] == "StepTimeoutError"
        assert started.is_set()
        assert not finished.is_set()  # the thread is still running
    finally:
        release.set()
    assert await asyncio.to_thread(finished.wait, 10)


async def test_the_actions_own_timeout_error_is_not_a_step_timeout() -> None:
    async def client() -> None:
        raise TimeoutError("upstream took too long")

    async def nested() -> None:
        raise StepTimeoutError("inner", 1.0)

    own = await run(client, timeout=10)
    inner = await run(nested, timeout=10)

    assert not own.timed_out
    assert own.error is not None
    assert own.error["type"] == "TimeoutError"
    assert not inner.timed_out
    assert inner.error is not None
    assert inner.error["message"] == "step 'inner' timed out after 1 s"


async def test_an_error_raised_while_being_cancelled_by_the_deadline_is_a_timeout() -> None:
    async def messy() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    outcome = await run(messy, timeout=0.05)

    assert outcome.timed_out
    assert outcome.error is not None
    assert outcome.error["type"] == "StepTimeoutError"


async def test_an_action_that_finishes_despite_the_deadline_counts_as_finished() -> None:
    async def stubborn() -> dict[str, bool]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return {"finished": True}
        return {"finished": False}

    outcome = await run(stubborn, timeout=0.05)

    assert outcome.ok
    assert outcome.output == {"finished": True}


async def test_a_sync_action_returning_an_awaitable_is_held_to_the_deadline() -> None:
    saw_cancellation = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            saw_cancellation.set()
            raise

    def start() -> Any:  # a plain function: it runs in a thread and returns a coroutine
        return slow()

    outcome = await run(start, timeout=0.05)

    assert outcome.timed_out
    assert saw_cancellation.is_set()


# -- cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, 10.0])
async def test_cancelling_the_invoking_task_propagates(timeout: float | None) -> None:
    started = asyncio.Event()
    saw_cancellation = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            saw_cancellation.set()
            raise

    task = asyncio.create_task(run(slow, timeout=timeout))
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert saw_cancellation.is_set()


async def test_cancelling_while_a_sync_action_runs_propagates() -> None:
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(10)

    task = asyncio.create_task(run(stuck, timeout=10.0))
    try:
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        release.set()


async def test_a_cancelled_error_the_action_raises_itself_is_its_failure() -> None:
    async def confused() -> None:
        raise asyncio.CancelledError("upstream future was cancelled")

    outcome = await run(confused)

    assert outcome.error is not None
    assert outcome.error["type"] == "CancelledError"
    assert outcome.error["retryable"] is True


# -- the step being served ---------------------------------------------------------------


async def test_an_async_action_knows_its_step_and_nothing_else_does() -> None:
    async def which() -> str | None:
        return current_step_id()

    outcome = await invoke(which, {}, timeout=None, step_id="charge")

    assert outcome.output == "charge"
    assert current_step_id() is None


async def test_a_plain_function_in_its_thread_knows_its_step_even_under_a_timeout() -> None:
    def which() -> str | None:
        return current_step_id()

    outcome = await invoke(which, {}, timeout=5.0, step_id="refund")

    assert outcome.output == "refund"
    assert current_step_id() is None


async def test_the_step_id_is_cleared_when_the_action_fails() -> None:
    async def broken() -> None:
        raise ValueError(current_step_id())

    outcome = await invoke(broken, {}, timeout=None, step_id="boom")

    assert outcome.error is not None
    assert outcome.error["message"] == "boom"
    assert current_step_id() is None


# -- timing ------------------------------------------------------------------------------


async def test_duration_is_measured_with_the_monotonic_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks: Iterator[float] = iter([100.0, 100.25])
    monkeypatch.setattr(invocation, "perf_counter", lambda: next(ticks))

    async def quick() -> int:
        return 1

    assert (await run(quick)).duration_ms == 250.0


async def test_duration_covers_the_time_the_action_took() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.02)

    outcome = await run(slow)

    assert outcome.ok
    assert 20 <= outcome.duration_ms < 5000
