"""Actions for the command-line tests: one that succeeds, one that fails, one that holds.

Workflows pause by referencing an input that is not given; ``hold`` keeps its step
running until ``RELEASE`` is set, so a test can stop an engine with a step in flight.
"""

from __future__ import annotations

import asyncio
import os

from flowledger import ActionRegistry, NonRetryableError

RELEASE = "FLOWLEDGER_TEST_RELEASE"

actions = ActionRegistry()


@actions.action("greet")
async def greet(name: str) -> dict[str, str]:
    return {"greeting": f"hello {name}"}


@actions.action("explode")
async def explode(message: str = "boom") -> None:
    raise NonRetryableError(message)


@actions.action("hold")
async def hold() -> dict[str, bool]:
    while not os.environ.get(RELEASE):
        await asyncio.sleep(0.02)
    return {"held": True}


@actions.action("undo")
def undo(greeting: str) -> dict[str, str]:
    return {"undone": greeting}


FIXED = "FLOWLEDGER_TEST_FIXED"


@actions.action("fragile")
async def fragile() -> dict[str, bool]:
    """Fails (not retryable) until ``FIXED`` is set: a fault an operator repairs."""
    if not os.environ.get(FIXED):
        raise NonRetryableError("not fixed yet")
    return {"fixed": True}
