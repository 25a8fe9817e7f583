"""Store calls in worker threads: closing waits for the calls still running."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowledger.engine.store_calls import StoreCalls


async def test_close_waits_for_a_call_in_progress_then_refuses_new_ones() -> None:
    calls = StoreCalls()
    entered, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow_read() -> str:
        entered.set()
        release.wait(5)
        finished.append("read")
        return "value"

    reading = asyncio.create_task(calls.run(slow_read))
    await asyncio.to_thread(entered.wait, 5)
    reading.cancel()  # as a stopping engine cancels its runners: the thread runs on
    closing = asyncio.create_task(asyncio.to_thread(calls.close))
    await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    await asyncio.wait_for(closing, 5)

    assert finished == ["read"]  # closed only after the read returned
    with pytest.raises(RuntimeError, match="the store is closed"):
        await calls.run(lambda: None)


async def test_a_call_returns_its_result_and_passes_its_errors_on() -> None:
    calls = StoreCalls()

    def refuse() -> None:
        raise LookupError("missing")

    assert await calls.run(sum, [1, 2, 3]) == 6
    with pytest.raises(LookupError, match="missing"):
        await calls.run(refuse)
    calls.close()  # nothing running: returns at once
