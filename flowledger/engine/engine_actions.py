"""What a workflow engine calls and whom it tells: its actions and its listeners.

Mixed into :class:`~flowledger.engine.engine.WorkflowEngine`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flowledger.engine.actions import BUILTIN_ACTIONS, ActionRegistry
from flowledger.engine.publishing import Listener, Publisher

F = TypeVar("F", bound=Callable[..., Any])


class EngineActions:
    """The action registries and listeners of a workflow engine."""

    _own_actions: ActionRegistry
    _user_actions: ActionRegistry
    _publisher: Publisher

    def action(self, name: str | None = None) -> Callable[[F], F]:
        """Register an action on the engine's own registry (decorator).

        Raises:
            ActionRegistrationError: The name is taken by another action (a built-in
                or one of the registry given to the engine).
        """

        def decorate(function: F) -> F:
            trial = self._own_actions.copy()
            trial.action(name)(function)
            # A clash is refused now, not when an execution starts.
            BUILTIN_ACTIONS.merged_with(self._user_actions, trial)
            return self._own_actions.action(name)(function)

        return decorate

    @property
    def actions(self) -> ActionRegistry:
        """Every action this engine can run: built-ins, the given registry, its own."""
        return BUILTIN_ACTIONS.merged_with(self._user_actions, self._own_actions)

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback`` with every history entry once it is durably saved."""
        self._publisher.add_listener(callback)
