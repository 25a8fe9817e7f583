"""Fakes: deterministic stand-ins for a workflow's actions.

A :class:`Fake` answers each call from what the call *is* — the step, the recorded
attempt, how many times this step called it — never from the clock or from state kept
between runs. So a run that crashes and is recovered meets the same answers as an
uninterrupted one, and a difference in outcome points at the engine (or at a fake that
was not deterministic after all).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowledger.errors import NonRetryableError


class TransientError(Exception):
    """The retryable error fakes raise when none is given (``Fake.fails``)."""


@dataclass(frozen=True)
class FakeCall:
    """One call of a fake, as the kit records it.

    Attributes:
        action: The action name the fake stands in for.
        step_id: The step whose action (or compensation) was called.
        attempt: The step's recorded attempt, from 1 (a step restarted after a crash
            runs the same attempt again); 1 for a compensation.
        invocation: How many times this action was called for this step in this run,
            this call included (a crash can make it exceed ``attempt``).
        parameters: The resolved parameters, as the action received them.
        compensation: True when the call compensates the step.
    """

    action: str
    step_id: str
    attempt: int
    invocation: int
    parameters: Mapping[str, Any]
    compensation: bool = False


Respond = Callable[[FakeCall], Any]
"""How a fake answers: returns the output (or an awaitable of it), or raises."""


class Fake:
    """A deterministic action stand-in: its answer is a function of the call.

    Build one with a class method (``Fake.returns``, ``Fake.fails``, ...) or with
    ``Fake(function)``, where ``function`` takes a :class:`FakeCall` and returns the
    output or raises. A plain callable given to the kit in place of a fake is called
    like an action, with the parameters as keyword arguments.

    Args:
        respond: Answers a call: returns the output (or an awaitable of it), or raises.
        description: How the fake reads in reports and Hypothesis examples.
    """

    def __init__(self, respond: Respond, description: str | None = None) -> None:
        self._respond = respond
        self._description = description or f"Fake({getattr(respond, '__name__', respond)!r})"

    def __repr__(self) -> str:
        return self._description

    async def answer(self, call: FakeCall) -> Any:
        """Return the output for ``call``, or raise its error."""
        result = self._respond(call)
        if inspect.isawaitable(result):
            result = await result
        return result

    @classmethod
    def returns(cls, output: Any) -> Fake:
        """Return ``output`` on every call."""
        return cls(lambda call: copy.deepcopy(output), f"Fake.returns({output!r})")

    @classmethod
    def echoes(cls) -> Fake:
        """Return the call's parameters, like the built-in ``echo`` action."""
        return cls(lambda call: dict(call.parameters), "Fake.echoes()")

    @classmethod
    def raises(cls, error: BaseException | str, *, retryable: bool = False) -> Fake:
        """Raise ``error`` on every call.

        Args:
            error: An exception (a fresh copy is raised each time) or a message for a
                :class:`TransientError` (retryable) or ``NonRetryableError``.
            retryable: Whether the engine may retry the step. A non-retryable error is
                raised as a ``NonRetryableError`` whose recorded type is the given
                error's class name.
        """
        kind = "retryable" if retryable else "permanent"

        def respond(call: FakeCall) -> Any:
            raise _error_to_raise(error, retryable)

        return cls(respond, f"Fake.raises({error!r}, {kind})")

    @classmethod
    def sequence(cls, *fakes: Fake) -> Fake:
        """Answer attempt ``n`` of a step as ``fakes[n - 1]`` does; the last one repeats.

        Raises:
            ValueError: No fake was given.
        """
        if not fakes:
            msg = "Fake.sequence needs at least one fake"
            raise ValueError(msg)

        def respond(call: FakeCall) -> Any:
            return fakes[min(call.attempt, len(fakes)) - 1].answer(call)

        listing = ", ".join(map(repr, fakes))
        return cls(respond, f"Fake.sequence({listing})")

    @classmethod
    def fails(
        cls, times: int = 1, then: Any = None, *, error: BaseException | str | None = None
    ) -> Fake:
        """Fail the first ``times`` attempts of each step with a retryable error, then return.

        Args:
            times: Attempts that fail (1 and up).
            then: The output once it succeeds (None: the parameters, like ``echo``).
            error: What the failing attempts raise (default: a ``TransientError``).
        """
        failing = cls.raises(error or TransientError("transient failure"), retryable=True)
        success = cls.echoes() if then is None else cls.returns(then)
        fake = cls.sequence(*([failing] * times), success)
        return cls(fake.answer, f"Fake.fails(times={times}, then={success!r})")

    @classmethod
    def by_step(cls, fakes: Mapping[str, Fake], default: Fake | None = None) -> Fake:
        """Answer each step's calls with its own fake (``default`` for the others).

        Raises:
            KeyError: At call time, when a step has no fake and there is no default.
        """
        table = dict(fakes)

        def respond(call: FakeCall) -> Any:
            fake = table.get(call.step_id, default)
            if fake is None:
                msg = f"no fake for step {call.step_id!r} (steps with one: {sorted(table)})"
                raise KeyError(msg)
            return fake.answer(call)

        return cls(respond, f"Fake.by_step({table!r}, default={default!r})")

    @classmethod
    def calling(cls, action: Callable[..., Any]) -> Fake:
        """Call ``action`` like the engine would, with the parameters as keyword arguments.

        ``action`` must be deterministic: a function of its parameters only.
        """
        name = getattr(action, "__name__", repr(action))
        return cls(lambda call: action(**call.parameters), f"Fake.calling({name})")


def as_fake(value: Fake | Callable[..., Any]) -> Fake:
    """Return ``value`` as a fake: a plain callable is called like an action.

    Raises:
        TypeError: ``value`` is neither a fake nor callable.
    """
    if isinstance(value, Fake):
        return value
    if callable(value):
        return Fake.calling(value)
    msg = f"a fake must be a Fake or a callable, not {type(value).__name__}"
    raise TypeError(msg)


def _error_to_raise(error: BaseException | str, retryable: bool) -> BaseException:
    if isinstance(error, str):
        return TransientError(error) if retryable else NonRetryableError(error)
    if retryable or isinstance(error, NonRetryableError):
        return copy.copy(error)  # a fresh exception each time: no traceback piles up
    return NonRetryableError(str(error), error_type=type(error).__name__)
