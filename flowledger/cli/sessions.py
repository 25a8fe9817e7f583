"""Opening the store for one command: a ledger to read, or an engine to act.

The command line's engine never recovers other executions (``recover=False``): an
operator's ``cancel`` or ``resume`` acts on the execution it names and nothing else,
so it never runs executions that another process owns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from flowledger.engine.actions import ActionRegistry
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.ledger import Ledger
from flowledger.engine.stores import parse_store_url
from flowledger.errors import StoreError

DEFAULT_MAX_CONCURRENT = 5
"""Steps running at once in the command line's engine unless ``--max-concurrent`` says."""


def require_store(store: str | None) -> None:
    """Refuse a SQLite store whose file does not exist, instead of creating it empty.

    Commands that only read or change recorded executions call this first, so a
    mistyped path is reported as such, not as an unknown execution.

    Raises:
        StoreError: The URL is invalid, or its SQLite file does not exist.
    """
    config = parse_store_url(store)
    if config.kind == "sqlite" and not Path(config.env["SQLITE_DBNAME"]).is_file():
        raise StoreError(config.display_url, "no such database file (nothing recorded there)")


@contextmanager
def open_ledger(store: str | None) -> Iterator[Ledger]:
    """Open the ledger of an existing store, and close it afterwards.

    Raises:
        StoreError: The URL is invalid, or names a store that does not exist or
            cannot be opened.
    """
    require_store(store)
    ledger = Ledger(store)
    try:
        yield ledger
    finally:
        ledger.close()


@asynccontextmanager
async def engine_session(
    store: str | None,
    actions: ActionRegistry | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
) -> AsyncIterator[WorkflowEngine]:
    """Run an engine that acts only on the executions it is given; stop and close it after.

    Raises:
        StoreError: The URL is invalid or the store cannot be opened.
    """
    engine = WorkflowEngine(
        store, actions=actions, max_concurrent_steps=max_concurrent, recover=False
    )
    try:
        async with engine:
            yield engine
    finally:
        engine.close()
