"""Whether a failed attempt is retried, and when.

The decision reads only recorded data (the policy and the error as data), and the
waiting time becomes an absolute ``not_before`` moment recorded in
``StepRetryScheduled``, so a restarted engine honours it instead of drawing a new one.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from flowledger.domain.definition.model import RetryPolicy, StepDefinition

DEFAULT_RETRY_POLICY = RetryPolicy(
    max_attempts=3,
    initial_interval=1.0,
    backoff=2.0,
    max_interval=60.0,
    jitter=0.1,
    non_retryable=(),
)
"""The engine-wide policy of steps that declare no ``retry``.

Three attempts in all, about 1 s and 2 s apart. Bounded on purpose, unlike Temporal's
unlimited default: actions run at least once per attempt, so for payment-like side
effects every retry is another chance of a duplicate, and a permanent failure should
reach compensation within seconds rather than retry for ever. Steps that can safely
retry longer say so in their own ``retry``. A 10% jitter spreads the retries of many
executions that failed together (a shared outage) while keeping delays predictable.
"""


def should_retry(policy: RetryPolicy, attempt: int, error: Mapping[str, Any]) -> bool:
    """Decide whether a failed attempt is followed by another.

    Args:
        policy: The step's effective policy.
        attempt: The attempt that just failed, counting from 1.
        error: The failure as data (``type``, ``retryable``, and optionally
            ``qualified_type``, as :func:`flowledger.engine.invocation.invoke` records
            it).

    Returns:
        False when the error is not retryable, when its ``type`` or ``qualified_type``
        is listed in ``policy.non_retryable`` (exact names: ``"CardDeclined"`` or
        ``"payments.errors.CardDeclined"``; subclasses are not matched), or when
        ``attempt`` has reached ``policy.max_attempts``; True otherwise.
    """
    if not error.get("retryable", False) or attempt >= policy.max_attempts:
        return False
    names = {error.get("type"), error.get("qualified_type")}
    return names.isdisjoint(policy.non_retryable)


def retry_delay(
    policy: RetryPolicy, next_attempt: int, random: Callable[[], float] = _random.random
) -> float:
    """Return the seconds to wait before ``next_attempt``.

    The interval grows by ``backoff`` from ``initial_interval`` (before attempt 2) and is
    capped at ``max_interval``; jitter then takes away a random part of it:
    ``interval * (1 - jitter * random())``.

    Args:
        policy: The step's effective policy.
        next_attempt: The attempt about to be scheduled (2 for the first retry).
        random: A source of numbers in [0, 1); injectable for tests. Values outside
            [0, 1] are clamped.

    Returns:
        Seconds, between ``interval * (1 - jitter)`` and ``interval``.
    """
    interval = policy.interval_before(next_attempt)
    jitter = min(max(float(policy.jitter), 0.0), 1.0)
    if jitter == 0.0:
        return interval
    drawn = min(max(random(), 0.0), 1.0)
    return interval * (1.0 - jitter * drawn)


def next_retry_time(
    policy: RetryPolicy,
    next_attempt: int,
    now: datetime,
    random: Callable[[], float] = _random.random,
) -> datetime:
    """Return the moment before which ``next_attempt`` must not start.

    Args:
        policy: The step's effective policy.
        next_attempt: The attempt about to be scheduled (2 for the first retry).
        now: The current time, timezone-aware (the engine's clock).
        random: A source of numbers in [0, 1); injectable for tests.

    Returns:
        ``now`` plus :func:`retry_delay`, in ``now``'s timezone.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (the ledger records UTC moments)")
    return now + timedelta(seconds=retry_delay(policy, next_attempt, random))


def effective_policy(step: StepDefinition, default: RetryPolicy) -> RetryPolicy:
    """Return the step's own retry policy, or ``default`` when it declares none."""
    return step.retry if step.retry is not None else default
