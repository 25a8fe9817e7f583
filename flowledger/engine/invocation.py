"""Running one attempt of an action: timeout, thread for plain functions, outcome as data.

:func:`invoke` never raises for anything the action does: every failure becomes an
:class:`Outcome` whose ``error`` is plain data, ready to be recorded in an event and
read back on replay. The one exception that passes through is the cancellation of the
task that called it (the engine cancels its tasks on shutdown).

Error data is ``{"type", "message", "retryable", "qualified_type"}``:

- ``type`` is the exception's bare class name (``"ValueError"``, ``"CardDeclined"``),
  or a :class:`~flowledger.errors.NonRetryableError`'s ``error_type``. Bare names are
  what authors write in a retry policy's ``non_retryable`` list, and they survive the
  module of an exception being moved.
- ``qualified_type`` is ``"module.QualName"`` of the exception class
  (``"builtins.ValueError"``, ``"payments.errors.CardDeclined"``), so an audit can tell
  two classes of one name apart and a ``non_retryable`` entry may name it exactly.
- ``message`` is ``str(exception)``, cut at :data:`MAX_MESSAGE_CHARS`.
- ``retryable`` is false for errors retrying cannot fix: ``NonRetryableError`` and its
  subclasses, ``SchemaValidationError``, ``UnknownActionError``, parameters that do not
  fit the action's signature (``ActionSignatureError``) and an output that is not JSON
  (``OutputNotSerializableError``); true for everything else, timeouts included.

Nothing here logs: parameters and outputs may hold secrets.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from flowledger.domain.canonical import decode_payload, encode_payload
from flowledger.domain.jsonpath import ROOT, child
from flowledger.engine.actions import Action
from flowledger.engine.schemas import check
from flowledger.errors import (
    ActionSignatureError,
    DefinitionError,
    NonRetryableError,
    OutputNotSerializableError,
    SchemaValidationError,
    StepTimeoutError,
    UnknownActionError,
)

MAX_MESSAGE_CHARS = 2000
"""Longest error message recorded; longer ones are cut and say by how much."""


_CURRENT_STEP: ContextVar[str | None] = ContextVar("flowledger_current_step", default=None)


def current_step_id() -> str | None:
    """Return the id of the step whose action is running in this context, or None.

    Set by :func:`invoke` around the action call, so an action (async, or a plain
    function in its worker thread) can tell which step it serves — to build an
    idempotency key, or to answer per step as what-if replay does. None outside an
    action call.
    """
    return _CURRENT_STEP.get()


_NON_RETRYABLE: tuple[type[BaseException], ...] = (
    NonRetryableError,
    DefinitionError,
    SchemaValidationError,
    UnknownActionError,
    ActionSignatureError,
    OutputNotSerializableError,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt of an action produced, as data.

    Attributes:
        ok: The action returned and its output passed the checks.
        output: The JSON-normalised output when ``ok`` (tuples became lists, keys
            sorted: exactly what a replay reads back), else None.
        error: ``{"type", "message", "retryable", "qualified_type"}`` when not ``ok``.
        timed_out: The attempt ran past its timeout.
        duration_ms: Wall time of the attempt, in milliseconds (monotonic clock).
    """

    ok: bool
    output: Any | None
    error: dict[str, Any] | None
    timed_out: bool
    duration_ms: float

    @property
    def retryable(self) -> bool:
        """Whether the failure may succeed on another attempt (False when ``ok``)."""
        return self.error is not None and bool(self.error["retryable"])


async def invoke(
    action: Action,
    parameters: Mapping[str, Any],
    *,
    timeout: float | None,
    step_id: str,
    input_schema: Mapping[str, Any] | None = None,
    output_schema: Mapping[str, Any] | None = None,
) -> Outcome:
    """Run one attempt of ``action`` with ``parameters`` as keyword arguments.

    Async actions (coroutine functions, callable objects with an async ``__call__``,
    partials of either) are awaited on the loop; anything else runs in a worker thread
    (:func:`asyncio.to_thread`), so the loop never blocks, and an awaitable it returns
    is awaited on the loop.

    On timeout an async action is cancelled (cooperatively: one that ignores the
    cancellation delays the return). A thread cannot be stopped: a timed-out plain
    function runs on in the background, keeps its worker thread until it returns, and
    its result is discarded.

    Args:
        action: The function to call.
        parameters: Resolved parameters, passed as keyword arguments.
        timeout: Seconds the attempt may run, or None for no limit.
        step_id: The step this attempt belongs to (for error messages).
        input_schema: JSON Schema the parameters must match before the call, or None.
        output_schema: JSON Schema the normalised output must match, or None.

    Returns:
        The outcome; never raises for a failure of the action.

    Raises:
        asyncio.CancelledError: The task running ``invoke`` was cancelled.
    """
    started = perf_counter()
    try:
        if input_schema is not None:
            check(input_schema, parameters, schema_type="input", step_id=step_id)
        _check_signature(action, parameters)
        output = await _run(action, parameters, timeout, step_id)
        output = _normalise(output, step_id)
        if output_schema is not None:
            check(output_schema, output, schema_type="output", step_id=step_id)
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # Raised by the action itself (say, it awaited a cancelled future): its failure.
        return _failure(error, started)
    except _DeadlinePassed as error:
        timed_out = StepTimeoutError(error.step_id, error.timeout)
        return _failure(timed_out, started, timed_out=True)
    except Exception as error:  # every failure of an action is data
        return _failure(error, started)
    return Outcome(
        ok=True,
        output=output,
        error=None,
        timed_out=False,
        duration_ms=(perf_counter() - started) * 1000.0,
    )


async def _run(
    action: Action, parameters: Mapping[str, Any], timeout: float | None, step_id: str
) -> Any:
    if timeout is None:
        return await _call_async(action, parameters, step_id)
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await _call_async(action, parameters, step_id)
    except asyncio.CancelledError:
        raise  # not the deadline: asyncio.timeout turns its own cancellation into TimeoutError
    except Exception:
        # Whatever the action raised once the deadline passed (TimeoutError, or another
        # error while being cancelled), the deadline ended the attempt. A TimeoutError
        # of the action's own, before the deadline, stays its error. An action that
        # swallows the cancellation and returns did finish: its output counts.
        if scope.expired():
            raise _DeadlinePassed(step_id, timeout) from None
        raise


async def _call_async(action: Action, parameters: Mapping[str, Any], step_id: str) -> Any:
    # asyncio.to_thread copies the context, so a plain function sees the step id too.
    token = _CURRENT_STEP.set(step_id)
    try:
        if _is_async(action):
            return await action(**parameters)
        result = await asyncio.to_thread(_call, action, parameters)
        if inspect.isawaitable(result):
            return await result
        return result
    finally:
        _CURRENT_STEP.reset(token)


class _DeadlinePassed(StepTimeoutError):
    """Our deadline, told apart from a StepTimeoutError an action raises itself."""


def _call(action: Action, parameters: Mapping[str, Any]) -> Any:
    return action(**parameters)


def _is_async(action: Action) -> bool:
    if inspect.iscoroutinefunction(action):
        return True
    call = getattr(action, "__call__", None)  # noqa: B004 - the method, not callability
    return call is not None and inspect.iscoroutinefunction(call)


def _check_signature(action: Action, parameters: Mapping[str, Any]) -> None:
    signature, takes_no_required = _signature(action)
    if signature is None or (not parameters and takes_no_required):
        return
    try:
        signature.bind(**parameters)
    except TypeError as error:
        accepted = signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        unexpected = () if takes_any else tuple(n for n in parameters if n not in accepted)
        missing = tuple(
            name
            for name, p in accepted.items()
            if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and name not in parameters
        )
        raise ActionSignatureError(_action_name(action), unexpected, missing, str(error)) from None


def _signature(action: Action) -> tuple[inspect.Signature | None, bool]:
    """The action's signature (None: call it as it is) and whether it requires nothing."""
    try:
        return _cached_signature(action)
    except TypeError:  # unhashable callable: look it up every time
        return _read_signature(action)


def _read_signature(action: Action) -> tuple[inspect.Signature | None, bool]:
    try:
        signature = inspect.signature(action)
    except (TypeError, ValueError):  # some built-ins have no signature: just call them
        return None, True
    takes_no_required = all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )
    return signature, takes_no_required


# Keyed by the action itself: hashing a Signature on every call cost more than binding.
_cached_signature = functools.lru_cache(maxsize=1024)(_read_signature)


def _action_name(action: Action) -> str:
    name = getattr(action, "__qualname__", None)
    return name if isinstance(name, str) else type(action).__name__


def _normalise(output: Any, step_id: str) -> Any:
    # The same round trip as recording: what is returned equals what a replay reads.
    try:
        return decode_payload(encode_payload(output))
    except (TypeError, ValueError, RecursionError) as error:
        found = _offending(output, ROOT, ())
        path, kind = found or (ROOT, f"not JSON ({error})")
        raise OutputNotSerializableError(step_id, path, kind) from None


def _offending(value: Any, path: str, seen: tuple[int, ...]) -> tuple[str, str] | None:
    """Return the path and description of the first value JSON cannot represent.

    Mirrors what canonical JSON accepts: any mapping with string keys, any sequence
    but text and bytes, and finite numbers.
    """
    if value is None or isinstance(value, str | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"the float {value!r}")
    if id(value) in seen:
        return path, "a circular reference"
    if isinstance(value, Mapping):
        problem = _key_problem(value)
        items = [] if problem else [(child(path, str(k)), item) for k, item in value.items()]
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        problem, items = None, [(child(path, index), item) for index, item in enumerate(value)]
    else:
        return path, f"of type {type(value).__module__}.{type(value).__qualname__}"
    if problem:
        return path, problem
    inner = (*seen, id(value))
    return next((found for at, item in items if (found := _offending(item, at, inner))), None)


def _key_problem(mapping: Mapping[Any, Any]) -> str | None:
    # JSON turns number, boolean and null keys into text, but cannot sort a mixture.
    kinds = set()
    for key in mapping:
        if isinstance(key, str):
            kinds.add("text")
        elif key is None or isinstance(key, int | float):
            kinds.add("non-text")
        else:
            return f"a mapping with a key of type {type(key).__name__}"
    return "a mapping mixing text and non-text keys" if len(kinds) > 1 else None


def error_data(error: BaseException) -> dict[str, Any]:
    """Return an exception as recordable data.

    Args:
        error: Any exception.

    Returns:
        ``{"type", "message", "retryable", "qualified_type"}`` (see the module's
        documentation for each field).
    """
    cls = type(error)
    name = error.error_type if isinstance(error, NonRetryableError) else cls.__name__
    return {
        "type": name,
        "message": _message(error),
        "retryable": not isinstance(error, _NON_RETRYABLE),
        "qualified_type": f"{cls.__module__}.{cls.__qualname__}",
    }


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not lose the failure
        text = f"<{type(error).__name__} with an unprintable message>"
    if len(text) > MAX_MESSAGE_CHARS:
        cut = len(text) - MAX_MESSAGE_CHARS
        text = f"{text[:MAX_MESSAGE_CHARS]}... [{cut} more characters]"
    return text


def _failure(error: BaseException, started: float, *, timed_out: bool = False) -> Outcome:
    return Outcome(
        ok=False,
        output=None,
        error=error_data(error),
        timed_out=timed_out,
        duration_ms=(perf_counter() - started) * 1000.0,
    )
