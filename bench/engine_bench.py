"""Engine throughput and replay figures, beside raw-SQLite baselines on the same disk.

Usage: ``python bench/engine_bench.py [--quick] [--dir PATH] [--json] [--profile]``.
See bench/README.md. A benchmark, not a test: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floors import domain_rate, handover_rate, run_steps, steps_definition, store_rate
from provenance import filesystem_of, load_average, print_report, run_info, sqlite_insert_rates

from flowledger import ExecutionState, ExecutionStatus, load_definition
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication

STALL_SECONDS = 10.0  # an engine run with no commit for this long is reported as a hang
RUNS = 3
CONCURRENT_STEPS = 10  # steps per execution in (b)
LOADED_STEPS = 4  # (c): 1 started + 4 x (step started, completed) + 1 completed = 10 events
ENGINE_LOG: Counter[str] = Counter()  # flowledger's log records, by message, in a section
NOTES: list[str] = []  # printed under the table


@dataclass(frozen=True)
class Scale:
    single_commits: int  # baseline (1): rows, one commit each
    batched_rows: int  # baseline (2): rows, 100 per commit
    sequential_steps: int  # (a)
    executions: int  # (b)
    loaded: int  # (c): finished executions
    long_steps: int  # (d)


FULL = Scale(2_000, 20_000, 1_000, 200, 1_000, 10_000)
QUICK = Scale(500, 5_000, 300, 50, 300, 2_000)


@dataclass
class Figure:
    """One row of the table; without a target, for information only."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None  # rows/s of a raw-SQLite baseline
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    error: str = ""
    runs: list[float] = field(default_factory=list)


def sqlite_baseline(name: str, path: Path, rows: int, per_commit: int) -> Figure:
    """Rows/s inserting event-store-shaped rows, ``per_commit`` per transaction."""
    rates = sqlite_insert_rates(path, rows, per_commit, RUNS)
    name = f"baseline {name} SQLite {per_commit} row{'s' * (per_commit > 1)}/commit x{rows:,}"
    NOTES.append(f"{name}, runs: {', '.join(f'{rate:,.0f}' for rate in rates)} rows/s")
    return Figure(name, statistics.median(rates), "rows/s", runs=rates)


def floor_figure(name: str, rates: list[float], baseline: float, share: float) -> Figure:
    """A floor's rate (see floors.py) against the baseline and target of its figure."""
    rate = statistics.median(rates)
    ratio, target = rate / baseline, f"ratio >= {share:.0%}"
    return Figure(name, rate, "steps/s", baseline, ratio, target, ratio >= share, runs=rates)


def floor_figures(scale: Scale, root: Path, single: float, batched: float) -> list[Figure]:
    """The engine's ceilings, measured with no engine (see floors.py)."""
    a, n, steps = scale.sequential_steps, scale.executions, CONCURRENT_STEPS
    return [
        floor_figure(
            "(a') no engine: loop awaits a writer thread, 2 rows/commit",
            [
                handover_rate(root / f"handover{run}.db", scale.single_commits)
                for run in range(RUNS)
            ],
            single,
            0.4,
        ),
        floor_figure(
            f"(a'') no engine: domain commands, 1 x {a:,}, 1 save per step",
            [store_rate(root / f"store-a{run}.db", 1, a, 1) for run in range(RUNS)],
            single,
            0.4,
        ),
        floor_figure(
            f"(b'') no engine: domain commands, {n} x {steps}, no store",
            [domain_rate(n, steps) for _ in range(RUNS)],
            batched,
            0.25,
        ),
        floor_figure(
            f"(b''') no engine: domain commands, {n} x {steps}, 50 steps per save",
            [store_rate(root / f"store-b{run}.db", n, steps, 50) for run in range(RUNS)],
            batched,
            0.25,
        ),
    ]


@dataclass
class EngineRun:
    seconds: float = 0.0
    batches: int = 0  # transactions the writer committed
    events: int = 0
    save_seconds: float = 0.0  # writer thread's time inside LedgerApplication.save_events


async def engine_run(path: Path, steps: int, executions: int, slots: int) -> EngineRun:
    """Start ``executions`` executions of ``steps`` noop steps together; wait for each."""
    definition, run = steps_definition("bench", steps), EngineRun()
    async with WorkflowEngine(store=f"sqlite:///{path}", max_concurrent_steps=slots) as engine:
        await engine.run_workflow(steps_definition("warm-up", 10))
        app, writer, save = engine._app, engine._writer, engine._app.save_events

        def timed_save(events: Any) -> None:
            start = time.perf_counter()
            try:
                save(events)
            finally:
                run.save_seconds += time.perf_counter() - start

        app.save_events = timed_save  # type: ignore[method-assign]
        ids: list[str] = []

        async def run_all() -> list[ExecutionState]:
            starts = (engine.start_workflow(definition, {"n": n}) for n in range(executions))
            ids.extend(await asyncio.gather(*starts))
            return [await engine.wait_for(execution_id) for execution_id in ids]

        before, start = writer.batches, time.perf_counter()
        task = asyncio.create_task(run_all())
        seen, last_change = writer.batches, time.perf_counter()
        while not (await asyncio.wait({task}, timeout=0.5))[0]:
            if writer.batches != seen:
                seen, last_change = writer.batches, time.perf_counter()
            elif time.perf_counter() - last_change > STALL_SECONDS:
                task.cancel()
                raise RuntimeError(await stall_report(engine, ids))
        states = task.result()
        run.seconds, run.batches = time.perf_counter() - start, writer.batches - before
    run.events = sum(state.version for state in states)
    ended = Counter(state.status.value for state in states)
    if ended != {ExecutionStatus.COMPLETED.value: executions}:
        raise RuntimeError(f"executions ended {dict(ended)}, expected all COMPLETED")
    return run


async def stall_report(engine: WorkflowEngine, ids: list[str]) -> str:
    """Say which executions are stuck, and how, once no commit happened for a while."""
    states = [await engine.get_workflow_status(execution_id) for execution_id in ids]
    stuck = Counter(
        f"{state.status.value}, steps {dict(Counter(s.status.value for s in state.steps.values()))}"
        for state in states
        if not state.status.is_terminal
    )
    shapes = "; ".join(f"{n} x {shape}" for shape, n in stuck.items()) or "none"
    return f"HANG: no commit for {STALL_SECONDS:.0f} s; of {len(ids)} started: {shapes}"


def build_long(path: Path, steps: int) -> tuple[str, int, int]:
    """Record a ``steps``-step execution and a snapshot; return id, version, snapshot bytes."""
    definition = load_definition(steps_definition("long", steps))
    step_ids = [step.id for step in definition.steps]
    at = datetime(2024, 1, 1, tzinfo=UTC)
    execution = Execution.start("long", definition, {}, at)
    plain = LedgerApplication(f"sqlite:///{path}", snapshot_interval=0)
    for first in range(0, steps, 500):
        at = run_steps(execution, step_ids[first : first + 500], at)
        plain.save(execution)
    execution.complete({}, at + timedelta(milliseconds=1))
    plain.save(execution)
    plain.close()
    snapshotting = LedgerApplication(f"sqlite:///{path}", snapshot_interval=100)
    snapshotting.put_snapshot(execution)
    assert snapshotting.snapshots is not None
    recorder = snapshotting.snapshots.recorder
    stored = recorder.select_events(execution_uuid("long"), desc=True, limit=1)
    snapshotting.close()
    if not stored or stored[0].originator_version != execution.version:
        raise RuntimeError("no snapshot at the execution's last version was recorded")
    return execution.execution_id, execution.version, len(stored[0].state)


def load_ms(path: Path, execution_id: str, version: int, interval: int) -> list[float]:
    """(d) Milliseconds per ``LedgerApplication.load``, RUNS times after a warm-up."""
    app = LedgerApplication(f"sqlite:///{path}", snapshot_interval=interval)
    times = []
    for _ in range(RUNS + 1):
        start = time.perf_counter()
        loaded = app.load(execution_id).version
        times.append((time.perf_counter() - start) * 1000)
        if loaded != version:
            raise RuntimeError(f"loaded version {loaded}, expected {version}")
    app.close()
    return times[1:]


def engine_figures(
    tag: str, path: Path, shape: tuple[int, int, int], baseline: float, share: float
) -> list[Figure]:
    """(a) or (b): ``shape`` is (steps per execution, executions, max_concurrent_steps)."""
    steps, executions, _ = shape
    path.mkdir()
    runs = [asyncio.run(engine_run(path / f"{n}.db", *shape)) for n in range(RUNS)]
    run = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]  # the median run
    rates = [steps * executions / r.seconds for r in runs]
    rate = statistics.median(rates)
    ratio, target, name = rate / baseline, f"ratio >= {share:.0%}", f"{tag}: steps/s"
    return [
        Figure(name, rate, "steps/s", baseline, ratio, target, ratio >= share, runs=rates),
        Figure(f"{tag}: transactions committed", run.batches, "txns"),
        Figure(f"{tag}: events per transaction", run.events / run.batches, "ev/txn"),
        Figure(f"{tag}: writer time in save", 100 * run.save_seconds / run.seconds, "% wall"),
    ]


def load_figures(tag: str, path: Path, count: int) -> list[Figure]:
    """(c) Record finished executions, 100 per transaction; time ``Ledger.get`` on each."""
    definition = load_definition(steps_definition("finished", LOADED_STEPS))
    step_ids = [step.id for step in definition.steps]
    app = LedgerApplication(f"sqlite:///{path}", snapshot_interval=0)
    at, executions = datetime(2024, 1, 1, tzinfo=UTC), []
    for n in range(count):
        execution = Execution.start(f"finished-{n}", definition, {"n": n}, at)
        execution.complete({}, run_steps(execution, step_ids, at))
        executions.append(execution)
    for first in range(0, count, 100):
        app.save(*executions[first : first + 100])
    app.close()
    ids, events = [e.execution_id for e in executions], sum(e.version for e in executions)
    rates: list[float] = []
    with Ledger(f"sqlite:///{path}") as ledger:
        for execution_id in ids[:50]:  # warm-up
            ledger.get(execution_id)
        for _ in range(RUNS):
            start = time.perf_counter()
            for execution_id in ids:
                ledger.get(execution_id)
            rates.append(events / (time.perf_counter() - start))
    name, rate = f"{tag} {count:,} x {events // count} events", statistics.median(rates)
    return [Figure(name, rate, "events/s", target=">= 50,000", passed=rate >= 50_000, runs=rates)]


def long_figures(tag: str, path: Path, steps: int) -> list[Figure]:
    execution_id, version, size = build_long(path, steps)
    fast, slow = (load_ms(path, execution_id, version, n) for n in (100, 0))
    tag, ms = f"{tag} 1 x {steps:,} steps ({version:,} events)", statistics.median(fast)
    return [
        Figure(f"{tag}, snapshot", ms, "ms", target="<= 5 ms", passed=ms <= 5, runs=fast),
        Figure(f"{tag}, no snapshot", statistics.median(slow), "ms", runs=slow),
        Figure("(d) snapshot size", size / 1024, "KiB"),
    ]


def measure(scale: Scale, root: Path) -> list[Figure]:
    def section(tag: str, work: Callable[[str], list[Figure]]) -> bool:
        print(f"running {tag} ...", file=sys.stderr, flush=True)  # a failure: an ERROR row
        ENGINE_LOG.clear()
        try:
            figures.extend(work(tag))
        except Exception as error:
            figures.append(Figure(tag, None, "", error=f"{type(error).__name__}: {error}"))
        finally:
            NOTES.extend(f"{tag}: flowledger logged {n} x {m}" for m, n in ENGINE_LOG.items())
        return not figures[-1].error

    figures = [
        sqlite_baseline("(1)", root / "raw1.db", scale.single_commits, 1),
        sqlite_baseline("(2)", root / "raw2.db", scale.batched_rows, 100),
    ]
    single, batched = (figure.value or 0.0 for figure in figures)
    a, n = scale.sequential_steps, scale.executions
    a_tag, all_slots = f"(a) 1 x {a:,} steps", n * CONCURRENT_STEPS
    section(a_tag, lambda t: engine_figures(t, root / "a", (a, 1, 5), single, 0.4))
    b_tag, shape = f"(b) {n} x {CONCURRENT_STEPS} steps, 50 slots", (CONCURRENT_STEPS, n, 50)
    if not section(b_tag, lambda t: engine_figures(t, root / "b", shape, batched, 0.25)):
        # (b) failed: measure it again where a slot is never lacking, for a figure at least
        b_tag, shape = f"(b') the same, {all_slots} slots", (CONCURRENT_STEPS, n, all_slots)
        section(b_tag, lambda t: engine_figures(t, root / "b2", shape, batched, 0.25))
    section("floors", lambda _: floor_figures(scale, root, single, batched))
    section("(c) Ledger.get", lambda t: load_figures(t, root / "c.db", scale.loaded))
    section("(d) load", lambda t: long_figures(t, root / "d.db", scale.long_steps))
    return figures


def number(value: float | None, unit: str = "") -> str:
    text = "-" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{text} {unit}".rstrip()


def table(figures: list[Figure]) -> str:
    rows: list[tuple[str, ...]] = [("figure", "value", "baseline", "ratio", "target", "result")]
    for f in figures:
        result = "ERROR" if f.error else {True: "PASS", False: "MISS", None: ""}[f.passed]
        baseline = "" if f.baseline is None else number(f.baseline, "rows/s")
        ratio = "" if f.ratio is None else f"{f.ratio:.1%}"
        rows.append((f.name, number(f.value, f.unit), baseline, ratio, f.target, result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows.insert(1, tuple("-" * w for w in widths))
    align = (str.ljust, str.rjust, str.rjust, str.rjust, str.ljust, str.ljust)
    lines = [
        "  ".join(a(c, w) for a, c, w in zip(align, row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += [f"\n{f.name}:\n  {f.error}" for f in figures if f.error] + ["", *NOTES]
    return "\n".join(lines)


def profile(scale: Scale, root: Path, b_failed: bool) -> str:
    """Top cumulative flowledger/ entries of (a) and (b), event-loop thread only."""
    n, texts = scale.executions, []
    b_slots = n * CONCURRENT_STEPS if b_failed else 50
    for name, args in (
        ("(a)", (root / "pa.db", scale.sequential_steps, 1, 5)),
        (f"(b) with {b_slots} slots", (root / "pb.db", CONCURRENT_STEPS, n, b_slots)),
    ):
        profiler, out = cProfile.Profile(), io.StringIO()
        with contextlib.suppress(RuntimeError):  # a hang: the table says so
            profiler.runcall(asyncio.run, engine_run(*args))
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats("flowledger/", 15)
        texts.append(f"cProfile of {name} (event-loop thread only):\n{out.getvalue().strip()}")
    return "\n\n".join(texts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (under 40 s)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--profile", action="store_true", help="also cProfile (a) and (b)")
    args = parser.parse_args()
    counting = logging.Handler()  # its filter counts the engine's log records, drops them all
    counting.addFilter(lambda r: ENGINE_LOG.update([f"{r.levelname} {r.msg!r}"]) is not None)
    logging.getLogger("flowledger").addHandler(counting)
    logging.getLogger("flowledger").propagate = False
    scale, started = (QUICK if args.quick else FULL), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowledger-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        figures = measure(scale, root)
        profiled = profile(scale, root, "(b')" in str(figures)) if args.profile else ""
    info = {
        **run_info(),
        "load average 1/5/15 min (at the end)": load_average(),
        "directory": str(root),
        "filesystem": filesystem_of(root.parent),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_report(info, figures, NOTES, table(figures), profiled, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
