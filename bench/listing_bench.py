"""Read-model figures: catch-up speed and Ledger.list over many executions, beside raw SQLite.

Usage: ``python bench/listing_bench.py [--quick] [--dir PATH] [--executions N]``.
See bench/README.md. A benchmark, not a test: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provenance import load_average, run_info

from flowledger import ExecutionStatus, load_definition
from flowledger.domain.definition.model import WorkflowDefinition
from flowledger.domain.execution import Execution
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.views import scan_executions
from flowledger.projections.execution_index import ExecutionQuery

RUNS = 7  # listing figures are the median of this many runs, after a warm-up
FULL, QUICK = 100_000, 10_000
WORKFLOWS = 5
SAVE_BATCH = 2_000  # executions per app.save (one transaction)
LIST_TARGET_MS = 50.0
BASE = datetime(2024, 1, 1, tzinfo=UTC)
HERE = Path(__file__).resolve().parent
ENDINGS = ("complete", "complete", "complete", "fail", "running", "pause", "cancel")


def definitions() -> list[WorkflowDefinition]:
    return [
        load_definition(
            {
                "id": f"wf-{n}",
                "steps": [
                    {"id": "fetch", "action": "http_get"},
                    {"id": "store", "action": f"store_{n % 2}"},
                ],
            }
        )
        for n in range(WORKFLOWS)
    ]


def execution(n: int, definition: WorkflowDefinition) -> Execution:
    """Execution ``n``: started a second after ``n - 1``, a few events, mixed endings."""
    at = BASE + timedelta(seconds=n)
    tick = timedelta(milliseconds=10)
    done = Execution.start(f"ex-{n:07d}", definition, {"n": n}, at)
    done.start_step("fetch", {}, at := at + tick)
    done.complete_step("fetch", {"n": n}, 5 + n % 97, at := at + tick)
    ending = ENDINGS[n % len(ENDINGS)]
    if ending == "complete":
        done.complete({}, at + tick)
    elif ending == "fail":
        done.fail("fetch", {"type": "E", "message": "m", "retryable": False}, at + tick)
    elif ending == "pause":
        done.pause("waiting", at + tick)
    elif ending == "cancel":
        done.request_cancel("enough", None, at + tick)
        done.cancel(at + 2 * tick)
    return done


def build(path: Path, count: int) -> tuple[int, float]:
    """Record ``count`` executions; return the number of events and executions/s."""
    app = LedgerApplication(f"sqlite:///{path}", snapshot_interval=0)
    defs = definitions()
    events, start = 0, time.perf_counter()
    for first in range(0, count, SAVE_BATCH):
        batch = [
            execution(n, defs[n % WORKFLOWS]) for n in range(first, min(count, first + SAVE_BATCH))
        ]
        events += len(app.save(*batch))
    rate = count / (time.perf_counter() - start)
    app.close()
    return events, rate


def median_ms(action: Callable[[], Any], runs: int = RUNS) -> tuple[float, list[float]]:
    action()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), times


def raw_baseline(path: Path, count: int) -> dict[str, float]:
    """Milliseconds to select 100 rows from an indexed 100k-row table with sqlite3."""
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(
        "PRAGMA journal_mode=WAL; CREATE TABLE executions (position INTEGER PRIMARY KEY,"
        " execution_id TEXT, workflow_id TEXT, status TEXT, created_at INTEGER);"
        "CREATE INDEX by_status ON executions (status, position);"
    )
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO executions VALUES (?, ?, ?, ?, ?)",
        ((n, f"ex-{n}", f"wf-{n % WORKFLOWS}", ENDINGS[n % 7], n) for n in range(1, count + 1)),
    )
    con.execute("COMMIT")
    figures = {
        "newest 100": median_ms(
            lambda: con.execute(
                "SELECT * FROM executions ORDER BY position DESC LIMIT 100"
            ).fetchall()
        )[0],
        "status, 100": median_ms(
            lambda: con.execute(
                "SELECT * FROM executions WHERE status = 'fail' ORDER BY position DESC LIMIT 100"
            ).fetchall()
        )[0],
    }
    con.close()
    return figures


def listing_figures(ledger: Ledger, count: int) -> list[tuple[str, float, list[float]]]:
    middle = BASE + timedelta(seconds=count // 2)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("list(limit=100)", lambda: ledger.list(limit=100)),
        ("list(status=FAILED)", lambda: ledger.list(status=ExecutionStatus.FAILED)),
        ("list(workflow_id='wf-2')", lambda: ledger.list(workflow_id="wf-2")),
        (
            "list(since, until: 1 h in the middle)",
            lambda: ledger.list(since=middle, until=middle + timedelta(hours=1)),
        ),
        (
            "list(status=RUNNING, workflow_id='wf-3')",
            lambda: ledger.list(status="RUNNING", workflow_id="wf-3"),
        ),
        ("list(status=COMPLETED, limit=10)", lambda: ledger.list(status="COMPLETED", limit=10)),
        ("metrics()", ledger.metrics),
    ]
    rows = []
    for name, action in cases:
        ms, runs = median_ms(action)
        rows.append((name, ms, runs))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK:,} executions, not {FULL:,}")
    parser.add_argument("--executions", type=int, default=None, help="how many executions")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    args = parser.parse_args()
    logging.getLogger("flowledger").setLevel(logging.ERROR)
    count = args.executions or (QUICK if args.quick else FULL)
    started = time.perf_counter()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="flowledger-listing-", dir=args.dir) as tmp:
        root = Path(tmp)
        ledger_path = root / "ledger.db"
        print(f"recording {count:,} executions ...", file=sys.stderr, flush=True)
        events, build_rate = build(ledger_path, count)
        lines.append(
            f"recorded {count:,} executions, {events:,} events ({build_rate:,.0f} executions/s)"
        )

        url = f"sqlite:///{ledger_path}"
        with Ledger(url) as ledger:
            print("catching up ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            ledger.rebuild_views()
            seconds = time.perf_counter() - start
            lines.append(
                f"catch-up from scratch: {events:,} events in {seconds:.1f} s"
                f" = {events / seconds:,.0f} events/s"
            )
            statuses = Counter(state.status.value for state in ledger.list(limit=None))
            lines.append(f"statuses: {dict(sorted(statuses.items()))}")
            print("listing ...", file=sys.stderr, flush=True)
            listing = listing_figures(ledger, count)
            app = ledger.application
            scan_ms = (
                time.perf_counter(),
                scan_executions(app, ExecutionQuery(limit=100)),
                time.perf_counter(),
            )
        baseline = raw_baseline(root / "baseline.db", count)
    scan = (scan_ms[2] - scan_ms[0]) * 1000

    info = {
        **run_info(),
        "load average 1/5/15 min (at the end)": load_average(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print("\n".join(f"{key}: {value}" for key, value in info.items()))
    print("\n".join(["", *lines, ""]))
    width = max(len(name) for name, _, _ in listing)
    print(f"{'Ledger call (after catch-up)':<{width}}  median ms  runs (ms)")
    for name, ms, runs in listing:
        print(f"{name:<{width}}  {ms:9.2f}  {', '.join(f'{r:.1f}' for r in runs)}")
    target = listing[0][1]
    verdict = "PASS" if target < LIST_TARGET_MS else "MISS"
    print(
        f"\ntarget: list(limit=100) of {count:,} < {LIST_TARGET_MS:.0f} ms:"
        f" {verdict} ({target:.2f} ms)"
    )
    print(
        f"before the index (scanning every first event), list(limit=100): {scan:,.0f} ms, one run"
    )
    print(
        "raw sqlite3 baseline, 100 rows of an indexed table of the same size: "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in baseline.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
