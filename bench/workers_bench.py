"""Worker throughput and pickup latency on PostgreSQL, beside raw-psycopg baselines.

Usage: ``python bench/workers_bench.py [--quick] [--json] [--concurrency N]
[--poll-interval S]``. The server is ``FLOWLEDGER_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``); every section uses a fresh schema of its
own and drops it afterwards. A benchmark, not a test: the exit code is 0 whatever the
figures.

What it measures, and why each figure has the baseline it has:

- **engine, N workers** (N = 1, 2, 4): ``flowledger worker`` processes are started
  and warmed up first; then executions of sequential ``noop`` steps are submitted from
  this process with ``start_workflow(run_here=False)``. Steps/s is counted from the
  first submission to the last ``ExecutionCompleted`` event's timestamp.
- **baseline, N processes**: psycopg inserting event-shaped rows (the engine's own
  average event size, measured in the engine's table) into a table shaped like
  eventsourcing's, two rows per commit, from N processes. That is the engine's commit
  pattern for sequential steps (``StepCompleted`` and the next ``StepStarted`` are saved
  together), so engine steps/s over baseline commits/s is the share of the database's
  commit rate the engine reaches.
- **baseline + lock + notify**: the same with what eventsourcing's PostgreSQL
  application recorder does in every transaction: ``LOCK TABLE ... IN EXCLUSIVE MODE``
  (notification ids in commit order) and ``NOTIFY``. It shows how much of the gap is
  the recorder's serialised commits rather than flowledger.
- **pickup latency**: from ``start_workflow(run_here=False)`` to the
  ``ExecutionClaimed`` event's timestamp, one execution at a time, with idle workers.
  It is bounded below by the workers' poll interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
from provenance import git_state
from psycopg import sql

from flowledger.domain.status import ExecutionStatus
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.leases import TABLE as LEASE_TABLE
from flowledger.engine.leasing import DEFAULT_POLL_INTERVAL
from flowledger.engine.ledger import Ledger

SERVER_ENV_VAR = "FLOWLEDGER_TEST_POSTGRES"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
WORKER_COUNTS = (1, 2, 4)
RUNS = 3  # each figure is the median of this many runs (one with --quick)
DEFAULT_CONCURRENCY = 20  # steps at once per worker (each drives up to twice as many executions)
LEASE_SECONDS = 15.0  # no worker dies here: the lease only needs renewing
RUN_TIMEOUT = 180.0  # seconds a measured run may take before it is reported as a hang
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
CHECK_INTERVAL = 0.02  # seconds between two looks at the lease table while waiting
DEFAULT_EVENT_BYTES = 300  # baseline row size if the engine's could not be measured
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
NOTES: list[str] = []  # printed under the table

FLOWLEDGER = [sys.executable, "-m", "flowledger"]


@dataclass(frozen=True)
class Scale:
    executions: int
    steps: int
    pickups: int


FULL = Scale(200, 10, 50)
QUICK = Scale(60, 10, 20)


@dataclass
class Figure:
    """One row of the table."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    error: str = ""
    runs: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


# -- schemas ------------------------------------------------------------------------------


def server_url() -> str:
    return os.environ.get(SERVER_ENV_VAR) or DEFAULT_SERVER


def store_url(schema: str) -> str:
    url = server_url()
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def connect(autocommit: bool = True) -> psycopg.Connection[Any]:
    # The server URL without flowledger's own query options is a libpq URI.
    return psycopg.connect(server_url().split("?")[0], autocommit=autocommit)


@contextmanager
def fresh_schema(tag: str) -> Iterator[str]:
    """A new schema for one section, dropped afterwards whatever happens."""
    schema = f"flowledger_bench_{uuid4().hex[:10]}_{tag}"
    with closing(connect()) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with closing(connect()) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def lease_count(schema: str) -> int:
    with closing(connect()) as db:
        table = sql.Identifier(schema, LEASE_TABLE)
        row = db.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        return int(row[0]) if row else 0


def event_bytes(schema: str) -> float | None:
    """Average stored size of the engine's step events in ``schema`` (None: none found)."""
    with closing(connect()) as db:
        found = db.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = %s AND column_name = 'notification_id'",
            (schema,),
        ).fetchone()
        if found is None:
            return None
        query = sql.SQL(
            "SELECT avg(octet_length(state)) FROM {} WHERE topic LIKE '%%:Step%%'"
        ).format(sql.Identifier(schema, found[0]))
        row = db.execute(query).fetchone()
        return float(row[0]) if row and row[0] is not None else None


# -- worker processes ---------------------------------------------------------------------


@dataclass
class Workers:
    """``flowledger worker`` processes on one store; output to files (a pipe could fill)."""

    store: str
    directory: Path
    concurrency: int
    poll_interval: float
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, count: int) -> None:
        """Start ``count`` workers one after the other, each once the last said it started.

        One at a time: workers opening one store at the same moment can fail on
        PostgreSQL's catalogue ("tuple concurrently updated").
        """
        for _ in range(count):
            n = len(self.processes)
            options = ["--store", self.store, "--worker-id", f"w{n}", "--json"]
            options += ["--concurrency", str(self.concurrency)]
            options += ["--lease-seconds", str(LEASE_SECONDS)]
            options += ["--poll-interval", str(self.poll_interval)]
            out = self.directory / f"w{n}.out"
            with out.open("wb") as sink:
                process = subprocess.Popen(
                    [*FLOWLEDGER, "worker", *options],
                    cwd=REPO_ROOT,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            self.processes.append((process, out))
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while '"started"' not in out.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start:\n{out.read_text()}")
                time.sleep(CHECK_INTERVAL)

    def stop(self) -> None:
        """SIGTERM each worker; SIGKILL one that does not exit (noted under the table)."""
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, out in self.processes:
            try:
                code = process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                NOTES.append(f"a worker ignored SIGTERM for {STOP_TIMEOUT:.0f} s, killed ({out})")
                continue
            if code != 0:
                NOTES.append(f"a worker exited {code}: {out.read_text()[-500:]}")
        self.processes.clear()


# -- the engine ---------------------------------------------------------------------------


def steps_definition(workflow_id: str, steps: int) -> dict[str, Any]:
    """A sequence of ``noop`` steps (steps format, no depends_on: each after the last)."""
    return {"id": workflow_id, "steps": [{"id": f"s{i}", "action": "noop"} for i in range(steps)]}


async def wait_until_drained(schema: str, timeout: float) -> None:
    """Wait until no lease row is left: every submitted execution rests."""
    deadline = time.monotonic() + timeout
    while lease_count(schema):
        if time.monotonic() > deadline:
            raise RuntimeError(f"HANG: executions still unfinished after {timeout:.0f} s")
        await asyncio.sleep(CHECK_INTERVAL)


@contextmanager
def submitter_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the submitting engine's whole life (its keeper task lives on it)."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


async def stop_submitter(engine: WorkflowEngine) -> None:
    try:
        await asyncio.wait_for(engine.stop(), STOP_TIMEOUT)
    except TimeoutError:
        NOTES.append("the submitting engine's stop() hung (LeaseKeeper.stop, see the report)")
    engine.close()


async def submit_and_finish(
    engine: WorkflowEngine, schema: str, definition: dict[str, Any], count: int
) -> tuple[float, list[str]]:
    """Submit ``count`` executions, wait for all; return (first submission time, ids)."""
    first = time.time()
    starts = (engine.start_workflow(definition, {"n": n}, run_here=False) for n in range(count))
    ids = list(await asyncio.gather(*starts))
    await wait_until_drained(schema, RUN_TIMEOUT)
    return first, ids


def engine_figure(scale: Scale, workers: int, args: argparse.Namespace) -> tuple[Figure, float]:
    """Steps/s of ``workers`` worker processes; also the engine's average event size."""
    steps = scale.executions * scale.steps
    name = (
        f"engine, {workers} worker{'s' * (workers > 1)}: {scale.executions} x {scale.steps} steps"
    )
    with fresh_schema(f"w{workers}") as schema, tempfile.TemporaryDirectory() as tmp:
        store = store_url(schema)
        pool = Workers(store, Path(tmp), args.concurrency, args.poll_interval)
        with submitter_loop() as loop:
            engine = WorkflowEngine(store, recover=False)
            try:
                loop.run_until_complete(engine.start())  # creates the tables first
                pool.start(workers)
                warm = steps_definition("warm-up", 3)
                loop.run_until_complete(submit_and_finish(engine, schema, warm, 4 * workers))
                definition = steps_definition("bench", scale.steps)
                first, ids = loop.run_until_complete(
                    submit_and_finish(engine, schema, definition, scale.executions)
                )
            finally:
                pool.stop()
                loop.run_until_complete(stop_submitter(engine))
        with Ledger(store) as ledger:
            states = [ledger.get(execution_id) for execution_id in ids]
        size = event_bytes(schema) or DEFAULT_EVENT_BYTES
    ended = {state.status for state in states}
    if ended != {ExecutionStatus.COMPLETED}:
        raise RuntimeError(f"executions ended {sorted(s.value for s in ended)}")
    seconds = max(state.updated_at.timestamp() for state in states) - first
    detail = {"seconds": round(seconds, 3), "steps": steps, "concurrency": args.concurrency}
    return Figure(name, steps / seconds, "steps/s", detail=detail), size


def pickup_figures(scale: Scale, args: argparse.Namespace) -> list[Figure]:
    """Start-to-claim latency, one execution at a time, with two idle workers."""
    with fresh_schema("pickup") as schema, tempfile.TemporaryDirectory() as tmp:
        store = store_url(schema)
        pool = Workers(store, Path(tmp), args.concurrency, args.poll_interval)
        latencies: list[float] = []
        with submitter_loop() as loop:
            engine = WorkflowEngine(store, recover=False)
            try:
                loop.run_until_complete(engine.start())
                pool.start(2)
                one = steps_definition("pickup", 1)
                loop.run_until_complete(submit_and_finish(engine, schema, one, 4))  # warm-up
                for _ in range(scale.pickups):
                    latencies.append(loop.run_until_complete(pickup_once(engine, schema, one)))
            finally:
                pool.stop()
                loop.run_until_complete(stop_submitter(engine))
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    tag = f"pickup latency, 2 idle workers, poll {args.poll_interval} s, n={len(latencies)}"
    detail = {"min_ms": round(latencies[0], 1), "max_ms": round(latencies[-1], 1)}
    return [
        Figure(f"{tag}: median", statistics.median(latencies), "ms", detail=detail),
        Figure(f"{tag}: p95", p95, "ms"),
    ]


async def pickup_once(engine: WorkflowEngine, schema: str, definition: dict[str, Any]) -> float:
    """Milliseconds from the start call to the ``ExecutionClaimed`` event's timestamp."""
    before = time.time()
    execution_id = await engine.start_workflow(definition, run_here=False)
    await wait_until_drained(schema, RUN_TIMEOUT)
    claims = [e for e in engine.ledger.history(execution_id) if e.type == "ExecutionClaimed"]
    if not claims:
        raise RuntimeError(f"{execution_id} finished without an ExecutionClaimed event")
    return (claims[0].timestamp.timestamp() - before) * 1000


# -- the baseline -------------------------------------------------------------------------


BASELINE_DDL = (
    # Shaped like eventsourcing's PostgreSQL application recorder's table.
    "CREATE TABLE {t} (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
    " topic text, state bytea, notification_id bigserial,"
    " PRIMARY KEY (originator_id, originator_version))",
    "CREATE UNIQUE INDEX ON {t} (notification_id ASC)",
)


@dataclass(frozen=True)
class BaselineJob:
    """What one baseline process does: ``commits`` commits of two ``size``-byte rows."""

    schema: str
    commits: int
    size: int
    lock: bool


def baseline_process(job: BaselineJob, go: Any, results: Any) -> None:
    """Insert two rows per commit, ``commits`` times; report (start, end) wall times."""
    schema, commits, size, lock = job.schema, job.commits, job.size, job.lock
    table = sql.Identifier(schema, "events")
    insert = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state)"
        " VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)"
    ).format(table)
    statements = (
        [
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table),
            sql.SQL("NOTIFY {}").format(sql.Identifier(f"{schema}_events")),
        ]
        if lock
        else []
    )
    topic, state = "flowledger.domain.events:StepCompleted", os.urandom(size)
    with closing(connect(autocommit=False)) as db:
        keys = [uuid4() for _ in range(10)]  # ten "executions", each a run of versions
        results.put(None)  # connected
        go.wait()
        start = time.time()
        for n in range(commits):
            key, version = keys[n % 10], 2 * (n // 10) + 1
            with db.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute(insert, (key, version, topic, state, key, version + 1, topic, state))
            db.commit()
        results.put((start, time.time()))


def baseline_figures(commits: int, processes: int, size: int, lock: bool) -> list[Figure]:
    """Commits/s of ``processes`` processes sharing ``commits`` 2-row commits."""
    context = multiprocessing.get_context("fork")
    with fresh_schema(f"raw{processes}") as schema:
        with closing(connect()) as db:
            for statement in BASELINE_DDL:
                db.execute(sql.SQL(statement).format(t=sql.Identifier(schema, "events")))
        go, results = context.Event(), context.Queue()
        share = commits // processes
        workers = [
            context.Process(
                target=baseline_process, args=(BaselineJob(schema, share, size, lock), go, results)
            )
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:  # every process connected: a common start
            results.get(timeout=STARTUP_TIMEOUT)
        go.set()
        spans = [results.get(timeout=RUN_TIMEOUT) for _ in workers]
        for worker in workers:
            worker.join()
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    kind = "+ LOCK TABLE + NOTIFY " if lock else ""
    name = f"baseline {kind}{processes} proc: 2 rows x {size} B per commit x {share * processes}"
    return [Figure(name, share * processes / seconds, "commits/s", detail={"seconds": seconds})]


# -- the run ------------------------------------------------------------------------------


def guarded(name: str, work: Callable[..., list[Figure]], *args: Any) -> list[Figure]:
    """Run one section; a failure becomes an ERROR row instead of ending the run."""
    print(f"running {name} ...", file=sys.stderr, flush=True)
    try:
        return work(*args)
    except Exception as error:  # a failed section is an ERROR row, not a crash
        return [Figure(name, None, "", error=f"{type(error).__name__}: {error}")]


def measure(scale: Scale, args: argparse.Namespace) -> list[Figure]:
    """Every figure, ``args.runs`` times; an engine and its baselines measured side by side.

    Runs are interleaved (engine with N workers, then the baselines with N processes)
    so that a change in the machine's load moves a figure and its baseline together.
    """
    measured: dict[str, list[Figure]] = {}
    size: float = DEFAULT_EVENT_BYTES
    commits = scale.executions * scale.steps

    def engine(workers: int) -> list[Figure]:
        nonlocal size
        figure, size = engine_figure(scale, workers, args)
        return [figure]

    for run in range(1, args.runs + 1):
        for n in WORKER_COUNTS:
            found = guarded(f"run {run}: engine, {n} workers", engine, n)
            measured.setdefault(f"engine {n}", []).extend(found)
            for lock in (False, True):
                what = f"run {run}: baseline{' + lock' * lock}, {n} processes"
                found = guarded(what, baseline_figures, commits, n, round(size), lock)
                measured.setdefault(f"baseline {lock} {n}", []).extend(found)
    figures = [median_of(measured[f"engine {n}"]) for n in WORKER_COUNTS]
    for figure, n in zip(figures, WORKER_COUNTS, strict=True):
        baseline = median_of(measured[f"baseline False {n}"])
        if figure.value and baseline.value:
            figure.baseline, figure.ratio = baseline.value, figure.value / baseline.value
    for lock in (False, True):
        figures += [median_of(measured[f"baseline {lock} {n}"]) for n in WORKER_COUNTS]
    return figures + guarded("pickup latency", pickup_figures, scale, args)


def median_of(runs: list[Figure]) -> Figure:
    """One figure from its runs: the median value, every run's value kept (or the error)."""
    failed = [figure for figure in runs if figure.error]
    if failed:
        return failed[0]
    values = [figure.value or 0.0 for figure in runs]
    middle = sorted(runs, key=lambda figure: figure.value or 0.0)[len(runs) // 2]
    return Figure(
        runs[0].name, statistics.median(values), runs[0].unit, runs=values, detail=middle.detail
    )


def number(value: float | None, unit: str = "") -> str:
    text = "-" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".rstrip()


def table(figures: list[Figure]) -> str:
    rows: list[tuple[str, ...]] = [("figure", "value", "baseline", "ratio")]
    for f in figures:
        baseline = "" if f.baseline is None else number(f.baseline, "commits/s")
        ratio = "" if f.ratio is None else f"{f.ratio:.1%}"
        rows.append((f.name, "ERROR" if f.error else number(f.value, f.unit), baseline, ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows.insert(1, tuple("-" * w for w in widths))
    align = (str.ljust, str.rjust, str.rjust, str.rjust)
    lines = [
        "  ".join(a(c, w) for a, c, w in zip(align, row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += [f"\n{f.name}:\n  {f.error}" for f in figures if f.error]
    lines += [""] + [
        f"{f.name}, runs: {', '.join(number(value) for value in f.runs)} {f.unit}"
        for f in figures
        if len(f.runs) > 1
    ]
    return "\n".join([*lines, "", *NOTES])


def server_settings() -> str:
    with closing(connect()) as db:
        found = []
        for setting in ("server_version", "synchronous_commit", "fsync", "wal_sync_method"):
            row = db.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
            found.append(f"{setting}={row[0] if row else '?'}")
        return " ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, one run")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else RUNS)
    scale, started = (QUICK if args.quick else FULL), time.perf_counter()
    figures = measure(scale, args)
    info = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "python": platform.python_version(),
        "eventsourcing": package_version("eventsourcing"),
        "psycopg": package_version("psycopg"),
        "server": server_settings(),
        "git": git_state(),
        "cpus": os.cpu_count(),
        "load average 1/5/15 min (at the end)": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(
            json.dumps({**info, "figures": [asdict(f) for f in figures], "notes": NOTES}, indent=2)
        )
    else:
        print("\n".join(f"{key}: {value}" for key, value in info.items()))
        print(f"workers: --concurrency {args.concurrency} --poll-interval {args.poll_interval}")
        print(f"every figure is the median of {args.runs} run(s); runs are listed below\n")
        print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
