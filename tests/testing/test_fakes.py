"""Fakes answer from the call alone: step, attempt, invocation, parameters."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import NonRetryableError
from flowledger.testing import Fake, FakeCall, TransientError
from flowledger.testing._fakes import as_fake


def call(attempt: int = 1, step_id: str = "s", **parameters: Any) -> FakeCall:
    return FakeCall("act", step_id, attempt, attempt, parameters)


async def test_returns_gives_a_fresh_copy_each_time() -> None:
    fake = Fake.returns({"items": [1]})
    first = await fake.answer(call())
    first["items"].append(2)
    assert await fake.answer(call()) == {"items": [1]}
    assert repr(fake) == "Fake.returns({'items': [1]})"


async def test_echoes_returns_the_parameters() -> None:
    assert await Fake.echoes().answer(call(amount=3)) == {"amount": 3}


async def test_raises_a_message_as_permanent_or_transient() -> None:
    with pytest.raises(NonRetryableError, match="declined"):
        await Fake.raises("declined").answer(call())
    with pytest.raises(TransientError, match="busy"):
        await Fake.raises("busy", retryable=True).answer(call())


async def test_raises_an_exception_keeping_its_type_name() -> None:
    class CardDeclinedError(Exception):
        pass

    with pytest.raises(NonRetryableError) as permanent:
        await Fake.raises(CardDeclinedError("no funds")).answer(call())
    assert permanent.value.error_type == "CardDeclinedError"

    original = CardDeclinedError("later")
    with pytest.raises(CardDeclinedError) as transient:
        await Fake.raises(original, retryable=True).answer(call())
    assert transient.value is not original  # a fresh copy each time
    with pytest.raises(NonRetryableError) as given:
        await Fake.raises(NonRetryableError("as is")).answer(call())
    assert str(given.value) == "as is"


async def test_sequence_answers_by_attempt_and_repeats_the_last() -> None:
    fake = Fake.sequence(Fake.raises("busy", retryable=True), Fake.returns("ok"))
    with pytest.raises(TransientError):
        await fake.answer(call(attempt=1))
    assert await fake.answer(call(attempt=2)) == "ok"
    assert await fake.answer(call(attempt=7)) == "ok"
    with pytest.raises(ValueError, match="at least one fake"):
        Fake.sequence()


async def test_fails_then_succeeds() -> None:
    fake = Fake.fails(times=2, then={"ok": True})
    for attempt in (1, 2):
        with pytest.raises(TransientError):
            await fake.answer(call(attempt=attempt))
    assert await fake.answer(call(attempt=3)) == {"ok": True}
    assert await Fake.fails(times=1).answer(call(attempt=2, n=1)) == {"n": 1}
    assert repr(fake) == "Fake.fails(times=2, then=Fake.returns({'ok': True}))"


async def test_by_step_needs_a_fake_for_each_step_without_a_default() -> None:
    fake = Fake.by_step({"a": Fake.returns(1)})
    assert await fake.answer(call(step_id="a")) == 1
    with pytest.raises(KeyError, match="no fake for step 'b'"):
        await fake.answer(call(step_id="b"))


async def test_calling_and_plain_callables_behave_like_actions() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert await as_fake(add).answer(call(a=1, b=2)) == 3
    assert await Fake.calling(lambda **given: sorted(given)).answer(call(b=1, a=2)) == ["a", "b"]
    assert repr(as_fake(add)) == "Fake.calling(add)"
    fake = Fake.returns(1)
    assert as_fake(fake) is fake
    with pytest.raises(TypeError, match="not int"):
        as_fake(3)  # type: ignore[arg-type]


def test_a_fake_built_from_a_function_is_named_after_it() -> None:
    def respond(call: FakeCall) -> int:
        return call.attempt

    assert repr(Fake(respond)) == "Fake('respond')"
    assert repr(Fake(respond, "answers the attempt")) == "answers the attempt"
