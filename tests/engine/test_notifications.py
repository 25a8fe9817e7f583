"""Notifications: catch-up then live, nothing missed, nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from flowledger.domain.state import HistoryEntry
from flowledger.engine.notifications import Notification, NotificationHub, notifications_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(version: int, kind: str, step_id: str | None = None) -> HistoryEntry:
    return HistoryEntry(version=version, type=kind, timestamp=T0, step_id=step_id, data={})


def note(execution_id: str, version: int, kind: str, step_id: str | None = None) -> Notification:
    return notifications_of(execution_id, [entry(version, kind, step_id)])[0]


def past(*notes: Notification):
    async def catch_up() -> Sequence[Notification]:
        return list(notes)

    return catch_up


async def collect(iterator, count: int | None = None) -> list[Notification]:
    got = []
    async for item in iterator:
        got.append(item)
        if count is not None and len(got) == count:
            break
    return got


def test_events_map_to_contract_statuses_and_others_are_left_out() -> None:
    entries = [
        entry(1, "ExecutionStarted"),
        entry(2, "StepStarted", "a"),
        entry(3, "ConditionEvaluated", "b"),
        entry(4, "StepCompleted", "a"),
        entry(5, "StepRetryScheduled", "b"),
        entry(6, "ExecutionCompleted"),
    ]
    notes = notifications_of("x", entries)
    assert [(n.status, n.version, n.step_id) for n in notes] == [
        ("RUNNING", 1, None),
        ("STEP_RUNNING", 2, "a"),
        ("STEP_COMPLETED", 4, "a"),
        ("STEP_RETRYING", 5, "b"),
        ("COMPLETED", 6, None),
    ]
    assert notes[-1].is_final and not notes[0].is_final


async def test_catch_up_then_live_without_duplicates() -> None:
    hub = NotificationHub()
    started, step = note("x", 1, "ExecutionStarted"), note("x", 2, "StepStarted", "a")

    async def catch_up() -> Sequence[Notification]:
        # The event at version 2 is saved and published while the catch-up reads.
        hub.publish([step])
        return [started, step]

    subscription = hub.subscribe("x", 0, catch_up)
    first_two = [await anext(subscription), await anext(subscription)]
    hub.publish([note("x", 3, "StepCompleted", "a"), note("x", 4, "ExecutionCompleted")])
    rest = await collect(subscription)
    assert [n.version for n in first_two + rest] == [1, 2, 3, 4]


async def test_one_execution_subscription_ends_after_its_final_notification() -> None:
    hub = NotificationHub()
    subscription = hub.subscribe("x", 0, past(note("x", 1, "ExecutionStarted")))
    task = asyncio.ensure_future(collect(subscription))
    await asyncio.sleep(0)
    hub.publish([note("y", 1, "ExecutionStarted"), note("x", 2, "ExecutionFailed")])
    assert [(n.execution_id, n.status) for n in await task] == [
        ("x", "RUNNING"),
        ("x", "FAILED"),
    ]


async def test_an_ended_execution_ends_the_subscription_even_past_from_version() -> None:
    hub = NotificationHub()
    catch_up = past(note("x", 1, "ExecutionStarted"), note("x", 2, "ExecutionCancelled"))
    assert await collect(hub.subscribe("x", 5, catch_up)) == []


async def test_from_version_skips_what_the_subscriber_has_seen() -> None:
    hub = NotificationHub()
    catch_up = past(*(note("x", v, "StepStarted", "a") for v in (1, 2, 3)))
    subscription = hub.subscribe("x", 2, catch_up)
    assert (await anext(subscription)).version == 3
    await subscription.aclose()


async def test_all_executions_until_the_hub_closes() -> None:
    hub = NotificationHub()
    subscription = hub.subscribe(None, 0, past(note("a", 1, "ExecutionStarted")))
    task = asyncio.ensure_future(collect(subscription))
    await asyncio.sleep(0)
    hub.publish([note("b", 1, "ExecutionStarted"), note("a", 2, "ExecutionCompleted")])
    hub.close()
    assert [(n.execution_id, n.version) for n in await task] == [("a", 1), ("b", 1), ("a", 2)]


async def test_closing_ends_a_waiting_one_execution_subscription() -> None:
    hub = NotificationHub()
    task = asyncio.ensure_future(collect(hub.subscribe("x", 0, past())))
    await asyncio.sleep(0)
    hub.close()
    assert await task == []


async def test_subscribing_after_close_gives_the_past_and_ends() -> None:
    hub = NotificationHub()
    hub.close()
    got = await collect(hub.subscribe(None, 0, past(note("a", 1, "ExecutionStarted"))))
    assert [n.version for n in got] == [1]


async def test_the_hub_knows_whether_anyone_is_subscribed() -> None:
    hub = NotificationHub()
    assert not hub.has_subscribers
    subscription = hub.subscribe("x", 0, past())
    task = asyncio.ensure_future(collect(subscription))
    await asyncio.sleep(0)
    assert hub.has_subscribers
    hub.publish([note("x", 1, "ExecutionCompleted")])
    await task
    assert not hub.has_subscribers
