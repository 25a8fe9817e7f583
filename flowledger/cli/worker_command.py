"""``flowledger worker``: a long-running engine process on a shared store.

A worker claims executions that are free (started with ``run_here=False``, handed
back, or left by a worker whose lease expired), drives them with its actions, and keeps
its leases renewed. SIGTERM or SIGINT stops it gracefully: it claims nothing more, lets
the steps in flight finish and be recorded, hands every unfinished execution back
(``ExecutionReleased``), and exits 0. A SIGKILLed worker's executions are taken over by
the other workers once its leases expire.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import click

from flowledger.cli.options import actions_option, common_options, load_actions
from flowledger.cli.sessions import DEFAULT_MAX_CONCURRENT
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.leases import DEFAULT_LEASE_SECONDS
from flowledger.engine.leasing import DEFAULT_POLL_INTERVAL
from flowledger.engine.stores import parse_store_url
from flowledger.errors import StoreError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop a worker gracefully."""


@click.command("worker")
@common_options
@actions_option()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CONCURRENT,
    show_default=True,
    help="Most steps running at once in this worker.",
)
@click.option("--worker-id", default=None, help="This worker's name (default: host:pid:random).")
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.5),
    default=DEFAULT_LEASE_SECONDS,
    show_default=True,
    help="How long a claim lasts unrenewed: how soon others take over if this worker dies.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_POLL_INTERVAL,
    show_default=True,
    help="Seconds between two looks for work.",
)
def worker_command(
    *,
    store: str | None,
    as_json: bool,
    actions_module: str | None,
    concurrency: int,
    worker_id: str | None,
    lease_seconds: float,
    poll_interval: float,
) -> None:
    """Run a worker: claim executions on a shared (PostgreSQL) store and drive them.

    Runs until SIGTERM or SIGINT, then finishes the steps in flight, hands unfinished
    executions back to the other workers, and exits 0.
    """
    config = parse_store_url(store)
    if config.kind != "postgresql":
        reason = "a worker shares its store with other workers: it needs postgresql://..."
        raise StoreError(config.display_url, reason)
    registry = load_actions(actions_module) if actions_module else None
    engine = WorkflowEngine(
        config.url,
        actions=registry,
        max_concurrent_steps=concurrency,
        worker_id=worker_id,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
    )
    try:
        asyncio.run(_serve(engine, as_json, config.display_url))
    finally:
        engine.close()


async def _serve(engine: WorkflowEngine, as_json: bool, display_url: str) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stopping.set)
    await engine.start()
    _say(as_json, "started", engine, f"worker {engine.worker_id} started on {display_url}")
    await stopping.wait()
    _say(as_json, "stopping", engine, f"worker {engine.worker_id} stopping")
    await engine.drain()
    _say(as_json, "stopped", engine, f"worker {engine.worker_id} stopped")


def _say(as_json: bool, event: str, engine: WorkflowEngine, text: str) -> None:
    line = json.dumps({"event": event, "worker": engine.worker_id}) if as_json else text
    click.echo(line)
    sys.stdout.flush()
