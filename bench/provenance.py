"""What a benchmark's figures were measured on, printed beside them."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from uuid import uuid4

HERE = Path(__file__).resolve().parent


def git_state() -> str:
    """The checkout's commit (``-dirty`` when it has changes), or ``unknown``."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=HERE,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def run_info() -> dict[str, object]:
    """What every benchmark prints about its run: command, versions, commit and CPUs."""
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "eventsourcing": package_version("eventsourcing"),
        "git": git_state(),
        "cpus": os.cpu_count(),
    }


def filesystem_of(path: Path) -> str:
    """The file system ``path`` is on (type, device, mount point), or ``unknown``."""
    try:
        done = subprocess.run(["df", "-PT", str(path)], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    words = done.stdout.strip().splitlines()[-1].split() if done.stdout.strip() else []
    return f"{words[1]} on {words[0]} (mounted at {words[-1]})" if len(words) >= 7 else "unknown"


def load_average() -> str:
    """The load averages over 1, 5 and 15 minutes (other work skews every figure)."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def raw_event_table(path: Path) -> sqlite3.Connection:
    """A new SQLite file with a table shaped like eventsourcing's events table.

    WAL with ``synchronous=FULL``, in autocommit mode (transactions are explicit); the
    connection may be used from another thread.
    """
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE stored_events ("
        "originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
        "PRIMARY KEY (originator_id, originator_version));"
    )
    return con


def sqlite_insert_rates(path: Path, rows: int, per_commit: int, runs: int) -> list[float]:
    """Rows/s inserting event-store-shaped rows, ``per_commit`` per fsynced transaction.

    The raw baseline beside the engine's figures: a table shaped like eventsourcing's
    SQLite recorder's, WAL with ``synchronous=FULL``, a warm-up first, then ``runs`` runs.
    """
    con = raw_event_table(path)
    topic, blob = "flowledger.domain.events:StepCompleted", os.urandom(200)

    def insert(count: int) -> float:
        ids = [uuid4().hex for _ in range(10)]
        start = time.perf_counter()
        for first in range(0, count, per_commit):
            con.execute("BEGIN")
            for i in range(first, min(first + per_commit, count)):
                row = (ids[i % 10], i // 10 + 1, topic, blob)
                con.execute("INSERT INTO stored_events VALUES (?, ?, ?, ?)", row)
            con.execute("COMMIT")
        return time.perf_counter() - start

    try:
        insert(min(rows // 10, 200))  # warm-up
        return [rows / insert(rows) for _ in range(runs)]
    finally:
        con.close()


def print_report(
    info: dict[str, object],
    figures: list[Any],
    notes: list[str],
    table: str,
    profiled: str,
    *,
    as_json: bool,
) -> None:
    """Print a SQLite benchmark's run information and figures: a table, or JSON."""
    if as_json:
        found = {**info, "figures": [asdict(f) for f in figures], "notes": notes}
        print(json.dumps(found, indent=2))
    else:
        print("\n".join(f"{key}: {value}" for key, value in info.items()))
        print("SQLite WAL, synchronous=FULL; every figure is the median of 3 runs\n")
        print(table)
    if profiled:
        print(f"\n{profiled}", file=sys.stderr if as_json else sys.stdout)
