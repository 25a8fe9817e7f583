"""The action registry and the built-in actions."""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any

import pytest

from flowledger.engine.actions import (
    BUILTIN_ACTIONS,
    ActionRegistrationError,
    ActionRegistry,
    IntentionalFailureError,
    UnknownActionError,
)
from flowledger.errors import FlowledgerError, NonRetryableError


async def charge_card(amount: int, card: str) -> dict[str, Any]:
    return {"charged": amount}


def refund(amount: int) -> dict[str, Any]:
    return {"refunded": amount}


# -- registering -------------------------------------------------------------------------


def test_decorator_registers_the_function_and_returns_it_unchanged() -> None:
    registry = ActionRegistry()

    decorated = registry.action("charge_card")(charge_card)

    assert decorated is charge_card
    assert registry.get("charge_card") is charge_card
    assert "charge_card" in registry


def test_decorator_defaults_the_name_to_the_functions_name() -> None:
    registry = ActionRegistry()

    @registry.action()
    def send_receipt() -> None:
        return None

    assert registry.names() == ["send_receipt"]


def test_register_and_initial_mapping() -> None:
    registry = ActionRegistry({"refund": refund})
    registry.register("charge_card", charge_card)

    assert registry.names() == ["charge_card", "refund"]
    assert len(registry) == 2
    assert list(registry) == ["charge_card", "refund"]
    assert "missing" not in registry
    assert repr(registry) == "ActionRegistry(['charge_card', 'refund'])"


def test_a_name_taken_by_another_function_is_refused() -> None:
    registry = ActionRegistry({"pay": charge_card})

    with pytest.raises(ActionRegistrationError) as caught:
        registry.register("pay", refund)

    assert isinstance(caught.value, FlowledgerError)
    assert caught.value.action == "pay"
    assert "charge_card" in str(caught.value)
    assert registry.get("pay") is charge_card


def test_registering_the_same_function_twice_is_harmless() -> None:
    registry = ActionRegistry({"pay": charge_card})

    registry.register("pay", charge_card)

    assert registry.get("pay") is charge_card


def test_replace_swaps_the_function() -> None:
    registry = ActionRegistry({"pay": charge_card})

    registry.register("pay", refund, replace=True)

    assert registry.get("pay") is refund


@pytest.mark.parametrize("name", ["", None, 3])
def test_names_must_be_non_empty_strings(name: Any) -> None:
    with pytest.raises(ActionRegistrationError, match="non-empty string"):
        ActionRegistry().register(name, refund)


def test_actions_must_be_callable() -> None:
    with pytest.raises(ActionRegistrationError, match="int is not callable"):
        ActionRegistry().register("pay", 42)  # type: ignore[arg-type]


def test_callable_objects_and_partials_are_accepted() -> None:
    class Charger:
        async def __call__(self, amount: int) -> dict[str, Any]:
            return {"charged": amount}

    registry = ActionRegistry()
    charger = Charger()
    registry.register("charge", charger)
    registry.register("refund_five", functools.partial(refund, amount=5))

    assert registry.get("charge") is charger
    assert registry.names() == ["charge", "refund_five"]


# -- looking up --------------------------------------------------------------------------


def test_unknown_action_names_it_and_lists_the_registered_ones_sorted() -> None:
    registry = ActionRegistry({"refund": refund, "charge_card": charge_card, "audit": refund})

    with pytest.raises(UnknownActionError) as caught:
        registry.get("ship_order")

    error = caught.value
    assert isinstance(error, FlowledgerError)
    assert error.action == "ship_order"
    assert error.registered == ("audit", "charge_card", "refund")
    assert str(error) == (
        "unknown action 'ship_order'; registered actions: audit, charge_card, refund"
    )


def test_unknown_action_suggests_a_close_name() -> None:
    registry = ActionRegistry({"charge_card": charge_card})

    with pytest.raises(UnknownActionError, match=r"did you mean 'charge_card'\?"):
        registry.get("charge_crad")


def test_unknown_action_in_an_empty_registry() -> None:
    with pytest.raises(UnknownActionError, match="registered actions: none"):
        ActionRegistry().get("anything")


# -- combining ---------------------------------------------------------------------------


def test_merged_with_combines_registries_into_a_new_one() -> None:
    user = ActionRegistry({"charge_card": charge_card})
    engine_own = ActionRegistry({"refund": refund})

    merged = BUILTIN_ACTIONS.merged_with(user, engine_own)

    assert merged.names() == ["charge_card", "echo", "fail", "noop", "refund", "sleep"]
    assert BUILTIN_ACTIONS.names() == ["echo", "fail", "noop", "sleep"]
    assert user.names() == ["charge_card"]


def test_merged_with_refuses_to_shadow_a_builtin() -> None:
    user = ActionRegistry({"echo": refund})

    with pytest.raises(ActionRegistrationError, match="'echo'"):
        BUILTIN_ACTIONS.merged_with(user)


def test_merged_with_accepts_the_same_function_twice() -> None:
    first = ActionRegistry({"refund": refund})
    second = ActionRegistry({"refund": refund})

    assert first.merged_with(second).names() == ["refund"]


def test_copy_is_independent() -> None:
    original = ActionRegistry({"refund": refund})

    copy = original.copy()
    copy.register("charge_card", charge_card)

    assert original.names() == ["refund"]
    assert copy.names() == ["charge_card", "refund"]


def test_the_builtin_registry_is_read_only_but_copies_are_not() -> None:
    with pytest.raises(ActionRegistrationError, match="read-only"):
        BUILTIN_ACTIONS.register("mine", refund)

    copy = BUILTIN_ACTIONS.copy()
    copy.register("mine", refund)
    assert "mine" in copy
    assert "mine" not in BUILTIN_ACTIONS


# -- built-ins ---------------------------------------------------------------------------


async def test_noop_returns_an_empty_dict_whatever_the_parameters() -> None:
    noop = BUILTIN_ACTIONS.get("noop")

    assert await noop() == {}
    assert await noop(anything=1) == {}


async def test_echo_returns_its_parameters() -> None:
    echo = BUILTIN_ACTIONS.get("echo")

    assert await echo(a=1, b=[1, 2], c={"d": None}) == {"a": 1, "b": [1, 2], "c": {"d": None}}
    assert await echo() == {}


async def test_sleep_sleeps_without_blocking_the_loop() -> None:
    sleep = BUILTIN_ACTIONS.get("sleep")
    other_ran = asyncio.Event()

    async def other() -> None:
        other_ran.set()

    other_task = asyncio.create_task(other())
    result = await sleep(seconds=0.01)
    await other_task

    assert result == {"slept": 0.01}
    assert other_ran.is_set()
    assert await sleep(seconds=0) == {"slept": 0}


@pytest.mark.parametrize("seconds", [-1, "5", True, None, math.inf, math.nan])
async def test_sleep_refuses_what_is_not_a_finite_non_negative_number(seconds: Any) -> None:
    with pytest.raises(NonRetryableError) as caught:
        await BUILTIN_ACTIONS.get("sleep")(seconds=seconds)

    assert caught.value.error_type == "InvalidParameterError"


async def test_fail_raises_a_retryable_error_by_default() -> None:
    fail = BUILTIN_ACTIONS.get("fail")

    with pytest.raises(IntentionalFailureError, match=r"^failed$") as caught:
        await fail()

    assert not isinstance(caught.value, NonRetryableError)
    with pytest.raises(IntentionalFailureError, match=r"^card declined$"):
        await fail(message="card declined")


async def test_fail_raises_a_non_retryable_error_when_asked() -> None:
    with pytest.raises(NonRetryableError, match=r"^gone$"):
        await BUILTIN_ACTIONS.get("fail")(message="gone", retryable=False)
