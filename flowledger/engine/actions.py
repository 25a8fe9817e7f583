"""Named actions a workflow's steps call, and the built-in ones.

An action is an async or plain function; the step's resolved parameters arrive as
keyword arguments and whatever it returns is the step's output. An action signals
failure by raising (:class:`~flowledger.errors.NonRetryableError` to fail its step at
once). Registries are plain values, never global state: the engine combines
:data:`BUILTIN_ACTIONS`, the user's registry and its own registrations with
:meth:`ActionRegistry.merged_with`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from flowledger.errors import (
    ActionRegistrationError,
    IntentionalFailureError,
    NonRetryableError,
    UnknownActionError,
)

Action = Callable[..., Any]
"""An async or plain function; resolved parameters arrive as keyword arguments."""

F = TypeVar("F", bound=Callable[..., Any])


class ActionRegistry:
    """Actions by name.

    Example:
        >>> registry = ActionRegistry()
        >>> @registry.action("charge_card")
        ... async def charge_card(amount: int, card: str) -> dict[str, Any]:
        ...     return {"charged": amount}
        >>> "charge_card" in registry
        True
    """

    def __init__(
        self, actions: Mapping[str, Action] | None = None, *, read_only: bool = False
    ) -> None:
        """Create a registry.

        Args:
            actions: Initial actions by name.
            read_only: Refuse later registrations (used for :data:`BUILTIN_ACTIONS`,
                which every engine shares).
        """
        self._actions: dict[str, Action] = {}
        self._read_only = False
        for name, function in (actions or {}).items():
            self.register(name, function)
        self._read_only = read_only

    def action(self, name: str | None = None) -> Callable[[F], F]:
        """Return a decorator registering a function under ``name``.

        Args:
            name: The action's name; defaults to the function's ``__name__``.

        Returns:
            A decorator that registers the function and returns it unchanged.
        """

        def decorate(function: F) -> F:
            self.register(name if name is not None else getattr(function, "__name__", ""), function)
            return function

        return decorate

    def register(self, name: str, function: Action, *, replace: bool = False) -> None:
        """Register ``function`` under ``name``.

        Registering the same function again under the same name changes nothing (a
        module imported twice must not fail).

        Args:
            name: A non-empty name.
            function: An async or plain callable.
            replace: Replace another function already registered under ``name``.

        Raises:
            ActionRegistrationError: The name is empty or taken by another function,
                the function is not callable, or the registry is read-only.
        """
        if self._read_only:
            raise ActionRegistrationError(name, "this registry is read-only; copy() it first")
        if not isinstance(name, str) or not name:
            raise ActionRegistrationError(name, "the name must be a non-empty string")
        if not callable(function):
            raise ActionRegistrationError(name, f"{type(function).__name__} is not callable")
        current = self._actions.get(name)
        if current is not None and current != function and not replace:
            raise ActionRegistrationError(
                name, f"the name is taken by {_name_of(current)} (pass replace=True)"
            )
        self._actions[name] = function

    def get(self, name: str) -> Action:
        """Return the action registered under ``name``.

        Raises:
            UnknownActionError: Nothing is registered under ``name``; the message
                lists the registered names.
        """
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownActionError(name, self._actions) from None

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._actions)

    def copy(self) -> ActionRegistry:
        """Return a writable copy of this registry."""
        return ActionRegistry(self._actions)

    def merged_with(self, *others: ActionRegistry) -> ActionRegistry:
        """Return a new registry holding this one's actions and those of ``others``.

        Raises:
            ActionRegistrationError: Two registries hold different functions under
                one name (a user action may not silently shadow a built-in).
        """
        merged = self.copy()
        for other in others:
            for name, function in other._actions.items():
                merged.register(name, function)
        return merged

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __len__(self) -> int:
        return len(self._actions)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"ActionRegistry({self.names()!r})"


def _name_of(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__


async def noop(**_parameters: Any) -> dict[str, Any]:
    """Do nothing; return ``{}`` whatever the parameters."""
    return {}


async def echo(**parameters: Any) -> dict[str, Any]:
    """Return the parameters as a dict."""
    return dict(parameters)


async def sleep(seconds: float) -> dict[str, Any]:
    """Sleep without blocking the event loop; return ``{"slept": seconds}``.

    Raises:
        NonRetryableError: ``seconds`` is not a finite, non-negative number (error
            type ``InvalidParameterError``).
    """
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise NonRetryableError(
            f"sleep needs a finite, non-negative number of seconds, got {seconds!r}",
            error_type="InvalidParameterError",
        )
    await asyncio.sleep(seconds)
    return {"slept": seconds}


async def fail(message: str = "failed", retryable: bool = True) -> None:
    """Fail on purpose, for demos and tests of retries and rollback.

    Raises:
        IntentionalFailureError: When ``retryable`` (the default).
        NonRetryableError: When ``retryable`` is false.
    """
    if retryable:
        raise IntentionalFailureError(message)
    raise NonRetryableError(message)


BUILTIN_ACTIONS = ActionRegistry(
    {"noop": noop, "echo": echo, "sleep": sleep, "fail": fail}, read_only=True
)
"""The actions every engine registers: ``noop``, ``echo``, ``sleep``, ``fail``.

Read-only, since every engine shares it; ``BUILTIN_ACTIONS.merged_with(user_actions)``
makes a new registry.
"""
