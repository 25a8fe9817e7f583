"""Retry decisions and backoff with jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from flowledger.domain.definition.model import RetryPolicy, StepDefinition
from flowledger.engine.retries import (
    DEFAULT_RETRY_POLICY,
    effective_policy,
    next_retry_time,
    retry_delay,
    should_retry,
)

POLICY = RetryPolicy(
    max_attempts=3,
    initial_interval=1.0,
    backoff=2.0,
    max_interval=60.0,
    jitter=0.5,
    non_retryable=("CardDeclined", "payments.errors.Fraud"),
)


def error(
    type_: str = "ValueError", retryable: bool = True, qualified: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type_, "message": "boom", "retryable": retryable}
    if qualified is not None:
        data["qualified_type"] = qualified
    return data


# -- should_retry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "data", "expected"),
    [
        (1, error(), True),
        (2, error(), True),
        (3, error(), False),  # the last allowed attempt failed
        (4, error(), False),
        (1, error(retryable=False), False),
        (1, error("CardDeclined"), False),  # bare name listed
        (1, error("Fraud", qualified="payments.errors.Fraud"), False),  # qualified name
        (1, error("Fraud", qualified="other.Fraud"), True),  # same bare name, other class
        (1, error("CardDeclinedLater"), True),  # exact names only
        (1, {"type": "ValueError", "message": "no retryable key"}, False),
    ],
)
def test_should_retry_matrix(attempt: int, data: dict[str, Any], expected: bool) -> None:
    assert should_retry(POLICY, attempt, data) is expected


def test_a_single_attempt_policy_never_retries() -> None:
    assert not should_retry(RetryPolicy(max_attempts=1), 1, error())


# -- delays ------------------------------------------------------------------------------


def no_jitter(**changes: Any) -> RetryPolicy:
    values: dict[str, Any] = {
        "max_attempts": 10,
        "initial_interval": 1.0,
        "backoff": 2.0,
        "max_interval": 10.0,
        "jitter": 0.0,
    }
    values.update(changes)
    return RetryPolicy(**values)


def never_called() -> float:
    raise AssertionError("random() must not be drawn without jitter")


def test_delays_grow_by_backoff_and_stop_at_max_interval() -> None:
    policy = no_jitter()

    delays = [retry_delay(policy, attempt, never_called) for attempt in range(2, 9)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_backoff_one_keeps_the_interval() -> None:
    policy = no_jitter(initial_interval=3.0, backoff=1.0)

    assert [retry_delay(policy, n, never_called) for n in (2, 5, 9)] == [3.0, 3.0, 3.0]


def test_huge_attempt_numbers_stay_capped() -> None:
    assert retry_delay(no_jitter(max_attempts=1000), 1000, never_called) == 10.0


@pytest.mark.parametrize(
    ("drawn", "expected"),
    [(0.0, 4.0), (1.0, 2.0), (0.5, 3.0), (-3.0, 4.0), (7.0, 2.0)],  # out of range: clamped
)
def test_jitter_takes_away_up_to_its_fraction(drawn: float, expected: float) -> None:
    policy = no_jitter(jitter=0.5)

    assert retry_delay(policy, 4, lambda: drawn) == pytest.approx(expected)


def test_full_jitter_can_reach_zero() -> None:
    assert retry_delay(no_jitter(jitter=1.0), 2, lambda: 1.0) == 0.0


def test_default_random_stays_within_the_jitter_bounds() -> None:
    policy = no_jitter(jitter=0.25)

    for _ in range(200):
        assert 3.0 <= retry_delay(policy, 4) <= 4.0


# -- next_retry_time ---------------------------------------------------------------------


def test_next_retry_time_adds_the_delay_to_an_aware_now() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    moment = next_retry_time(POLICY, 3, now, lambda: 0.0)

    assert moment == now + timedelta(seconds=2)
    assert moment.tzinfo is UTC


def test_next_retry_time_keeps_the_timezone_of_now() -> None:
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2025, 1, 1, 12, 0, tzinfo=plus_two)

    moment = next_retry_time(POLICY, 2, now, lambda: 1.0)

    assert moment.utcoffset() == timedelta(hours=2)
    assert moment - now == timedelta(seconds=0.5)


def test_next_retry_time_uses_jitter_by_default() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)

    moment = next_retry_time(POLICY, 2, now)

    assert now + timedelta(seconds=0.5) <= moment <= now + timedelta(seconds=1)


def test_next_retry_time_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_retry_time(POLICY, 2, datetime(2025, 1, 1), lambda: 0.0)


# -- policies ----------------------------------------------------------------------------


def test_effective_policy_prefers_the_steps_own() -> None:
    own = RetryPolicy(max_attempts=7)

    assert effective_policy(StepDefinition(id="a", action="x", retry=own), POLICY) is own
    assert effective_policy(StepDefinition(id="b", action="x"), POLICY) is POLICY


def test_default_policy_is_bounded_with_backoff_and_jitter() -> None:
    assert DEFAULT_RETRY_POLICY.max_attempts == 3
    assert DEFAULT_RETRY_POLICY.non_retryable == ()
    delays = [retry_delay(DEFAULT_RETRY_POLICY, n, lambda: 0.0) for n in (2, 3)]
    assert delays == [1.0, 2.0]
    assert retry_delay(DEFAULT_RETRY_POLICY, 2, lambda: 1.0) == pytest.approx(0.9)
    assert not should_retry(DEFAULT_RETRY_POLICY, 3, error())
