"""The engine-wide bound on running steps."""

from __future__ import annotations

import asyncio

import pytest

from flowledger.engine.slots import SlotPool


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SlotPool(0)


def test_try_take_until_full_then_release() -> None:
    pool = SlotPool(2)
    assert pool.try_take() and pool.try_take()
    assert not pool.try_take()
    assert pool.in_use == 2
    pool.release()
    assert pool.in_use == 1 and pool.try_take()


async def test_waiters_are_served_first_come_first_served() -> None:
    pool = SlotPool(1)
    assert pool.try_take()
    order: list[str] = []

    async def wait(name: str) -> None:
        await pool.take()
        order.append(name)

    first = asyncio.ensure_future(wait("first"))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0)
    assert not pool.try_take()  # a free slot would go to the waiters first
    pool.release()
    await first
    assert order == ["first"]
    pool.release()
    await second
    assert order == ["first", "second"]
    assert pool.in_use == 1


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    pool = SlotPool(1)
    assert pool.try_take()
    cancelled = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    pool.release()
    assert pool.in_use == 0


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    pool = SlotPool(1)
    assert pool.try_take()
    doomed = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0)
    pool.release()  # hands the slot to the waiter...
    doomed.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert pool.in_use == 0


async def test_take_is_immediate_when_a_slot_is_free() -> None:
    pool = SlotPool(1)
    await pool.take()
    assert pool.in_use == 1


async def test_a_waiter_cancelled_after_release_skipped_it_leaves_quietly() -> None:
    pool = SlotPool(1)
    assert pool.try_take()
    waiting = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0)
    waiting.cancel()  # its future is cancelled at once; the task has not run yet
    pool.release()  # drops the cancelled waiter and frees the slot
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.in_use == 0
