"""Cost of the compliance features on SQLite, beside a raw-SQLite baseline on the same disk.

Usage: ``python bench/compliance_bench.py [--quick] [--dir PATH] [--json] [--profile]``.
See bench/README.md. A benchmark, not a test: the exit code is 0 whatever the figures.

Figures (each the median of 3 runs, after a warm-up):

- engine throughput (steps/s) of one workflow in four configurations: plain, encrypted at
  rest (``cipher_key``), personal data sealed (``personal_data``), and retention plus
  personal data (both keys), each also as a share of plain;
- ``Ledger.get`` and ``Ledger.history`` latency (ms) of an execution of each configuration;
- ``Ledger.forget_subject`` on stores of N executions (it loads every execution);
- ``Ledger.purge`` of N retained executions (certificates/s);
- baseline: raw ``sqlite3`` single-row commits/s (WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import argparse
import asyncio
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provenance import filesystem_of, load_average, print_report, run_info, sqlite_insert_rates

from flowledger import ExecutionStatus, Ledger, WorkflowEngine, generate_cipher_key

RUNS = 3
STEPS = 5  # echo steps per execution
SLOTS = 50  # max_concurrent_steps, as engine_bench's (b)
RUN_TIMEOUT = 300.0  # seconds an engine run may take before it is reported as an error
ACTOR, REASON = "bench", "compliance benchmark"
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
NOTES: list[str] = []  # printed under the table


@dataclass(frozen=True)
class Scale:
    single_commits: int  # baseline: rows, one commit each
    executions: int  # per engine run (each of STEPS steps)
    reads: int  # executions read per get/history run
    erasure_stores: tuple[int, ...]  # executions in the stores forget_subject scans


FULL = Scale(2_000, 200, 100, (200, 1_000))
QUICK = Scale(500, 100, 30, (100, 300))


@dataclass(frozen=True)
class Config:
    """One engine configuration of the throughput figures."""

    name: str
    encrypted: bool = False
    personal: bool = False
    retention: bool = False


CONFIGS = (
    Config("plain"),
    Config("encrypted at rest", encrypted=True),
    Config("personal data sealed", personal=True),
    Config("retention + personal data", personal=True, retention=True),
)
PLAIN, ENCRYPTED, PERSONAL, RETAINED = CONFIGS


@dataclass
class Figure:
    """One row of the table; ``share`` is the value as a fraction of plain's."""

    name: str
    value: float | None
    unit: str
    share: float | None = None
    error: str = ""
    runs: list[float] = field(default_factory=list)


@dataclass
class Store:
    """A SQLite ledger written by engine runs of one configuration."""

    path: Path
    config: Config
    key: str | None
    ids: list[str] = field(default_factory=list)  # executions, in start order

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


def definition(workflow_id: str, config: Config) -> dict[str, Any]:
    """STEPS echo steps; with personal data, every other step takes and marks the email."""
    steps: list[dict[str, Any]] = []
    for n in range(STEPS):
        step: dict[str, Any] = {"id": f"s{n}", "action": "echo", "parameters": {"n": "${input.n}"}}
        if config.personal and n % 2 == 0:
            step["parameters"]["email"] = "${input.email}"
            step["personal_data"] = True
        steps.append(step)
    found: dict[str, Any] = {"id": workflow_id, "steps": steps}
    if config.personal:
        found["personal_data"] = {"subject": "${input.customer_id}", "input": ["email"]}
    if config.retention:
        found["retention"] = {"days": 30}
    return found


def customer(n: int) -> dict[str, Any]:
    """Execution ``n``'s input: a data subject of its own."""
    return {"n": n, "customer_id": f"cust-{n}", "email": f"user{n}@example.com"}


@dataclass
class EngineRun:
    seconds: float
    ids: list[str]


async def engine_run(
    store: Store,
    executions: int,
    first: int = 0,
    opened: Callable[[WorkflowEngine], None] | None = None,
) -> EngineRun:
    """Start ``executions`` executions together (after a warm-up one); wait for each."""
    config, shape = store.config, definition("bench", store.config)
    async with WorkflowEngine(store.url, max_concurrent_steps=SLOTS, cipher_key=store.key) as e:
        if opened is not None:
            opened(e)
        warm_up = await e.start_workflow(definition("warm-up", config), customer(-1 - first))
        await e.wait_for(warm_up)
        start = time.perf_counter()

        async def run_all() -> list[str]:
            numbers = range(first, first + executions)
            ids = await asyncio.gather(*(e.start_workflow(shape, customer(n)) for n in numbers))
            states = [await e.wait_for(execution_id) for execution_id in ids]
            ended = Counter(state.status.value for state in states)
            if ended != {ExecutionStatus.COMPLETED.value: executions}:
                raise RuntimeError(f"executions ended {dict(ended)}, expected all COMPLETED")
            return list(ids)

        ids = await asyncio.wait_for(run_all(), RUN_TIMEOUT)
        seconds = time.perf_counter() - start
    store.ids.extend([warm_up, *ids])
    return EngineRun(seconds, ids)


def sqlite_baseline(path: Path, rows: int) -> Figure:
    """Rows/s inserting event-store-shaped rows, one per transaction (as engine_bench's (1))."""
    rates = sqlite_insert_rates(path, rows, 1, RUNS)
    name = f"baseline: raw SQLite, 1 row/commit x{rows:,}"
    return Figure(name, statistics.median(rates), "commits/s", runs=rates)


def throughput(root: Path, scale: Scale, stores: dict[str, list[Store]]) -> list[Figure]:
    """(1) Steps/s of each configuration; its stores are kept for the later sections."""
    figures: list[Figure] = []
    plain: float | None = None
    for config in CONFIGS:
        key = generate_cipher_key() if config.encrypted else None
        slug = config.name.replace(" ", "-").replace("+", "and")
        made = [Store(root / f"{slug}-{n}.db", config, key) for n in range(RUNS)]
        name = f"(1) {config.name}: {scale.executions} x {STEPS} steps, {SLOTS} slots"
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            runs = [asyncio.run(engine_run(store, scale.executions)) for store in made]
        except Exception as error:
            figures.append(Figure(name, None, "", error=f"{type(error).__name__}: {error}"))
            continue
        stores[config.name] = made
        rates = [scale.executions * STEPS / run.seconds for run in runs]
        rate = statistics.median(rates)
        plain = rate if config is PLAIN else plain
        share = None if plain is None else rate / plain
        figures.append(Figure(name, rate, "steps/s", share, runs=rates))
    return figures


def median_ms(action: Callable[[str], Any], ids: list[str]) -> list[float]:
    """Milliseconds per call of ``action`` over ``ids``, RUNS times after a warm-up."""
    for execution_id in ids[:10]:
        action(execution_id)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for execution_id in ids:
            action(execution_id)
        times.append((time.perf_counter() - start) * 1000 / len(ids))
    return times


def reads(scale: Scale, stores: dict[str, list[Store]]) -> list[Figure]:
    """(2) ``Ledger.get`` and ``Ledger.history`` of finished executions, per call."""
    figures: list[Figure] = []
    plain: dict[str, float] = {}
    for config in CONFIGS:
        if config.name not in stores:
            continue
        store = stores[config.name][0]
        ids = store.ids[1 : 1 + scale.reads]  # not the warm-up execution
        with Ledger(store.url, cipher_key=store.key) as ledger:
            for call, action in (("get", ledger.get), ("history", ledger.history)):
                runs = median_ms(action, ids)
                ms = statistics.median(runs)
                plain.setdefault(call, ms)
                name = f"(2) Ledger.{call}, {config.name}"
                figures.append(Figure(name, ms, "ms/call", ms / plain[call], runs=runs))
    return figures


def forget_figures(store: Store, subjects: list[str]) -> list[Figure]:
    """Time ``forget_subject`` of one subject per run (after a warm-up one)."""
    count = len(store.ids)
    with Ledger(store.url, cipher_key=store.key) as ledger:
        found = ledger.forget_subject(subjects[0], ACTOR, REASON)  # warm-up
        if len(found.executions) != 1:
            raise RuntimeError(f"forgetting {subjects[0]} touched {found.executions}")
        times = []
        for subject in subjects[1 : RUNS + 1]:
            start = time.perf_counter()
            ledger.forget_subject(subject, ACTOR, REASON)
            times.append((time.perf_counter() - start) * 1000)
    name = f"(3) forget_subject, store of {count:,} executions"
    per = [ms / count for ms in times]
    return [
        Figure(name, statistics.median(times), "ms", runs=times),
        Figure(f"{name}, per execution", statistics.median(per), "ms", runs=per),
    ]


def erasure(root: Path, scale: Scale, stores: dict[str, list[Store]]) -> list[Figure]:
    """(3) ``forget_subject`` on stores of personal-data executions of each size."""
    store = stores[PERSONAL.name][0] if PERSONAL.name in stores else None
    if store is None:
        store = Store(root / "erasure.db", PERSONAL, None)
    figures: list[Figure] = []
    for size in scale.erasure_stores:
        have = len(store.ids)
        if have < size:  # grow the store: one engine run adds the missing executions
            print(f"recording {size - have:,} more executions ...", file=sys.stderr, flush=True)
            asyncio.run(engine_run(store, size - have - 1, first=10_000 + have))
        # Subjects of executions of the first run, each forgotten once, a warm-up first.
        first = len(figures) // 2 * (RUNS + 1)
        subjects = [customer(n)["customer_id"] for n in range(first, first + RUNS + 1)]
        figures += forget_figures(store, subjects)
    return figures


def purges(stores: dict[str, list[Store]]) -> list[Figure]:
    """(4) ``purge`` of every retained execution, one store per run."""
    rates, times, count = [], [], 0
    for store in stores[RETAINED.name]:
        with Ledger(store.url, cipher_key=store.key) as ledger:
            start = time.perf_counter()
            certificates = ledger.purge(ACTOR, REASON, now=FAR_FUTURE)
            seconds = time.perf_counter() - start
        count = len(certificates)
        if count != len(store.ids):
            raise RuntimeError(f"purged {count} executions of {len(store.ids)}")
        rates.append(count / seconds)
        times.append(seconds * 1000)
    name = f"(4) purge, {count:,} retained executions"
    return [
        Figure(name, statistics.median(rates), "certificates/s", runs=rates),
        Figure(f"{name}, in all", statistics.median(times), "ms", runs=times),
    ]


def measure(scale: Scale, root: Path) -> list[Figure]:
    stores: dict[str, list[Store]] = {}

    def section(tag: str, work: Callable[[], list[Figure]]) -> None:
        print(f"running {tag} ...", file=sys.stderr, flush=True)
        try:
            figures.extend(work())
        except Exception as error:
            figures.append(Figure(tag, None, "", error=f"{type(error).__name__}: {error}"))

    figures = [sqlite_baseline(root / "raw.db", scale.single_commits)]
    figures += throughput(root, scale, stores)
    section("(2) reads", lambda: reads(scale, stores))
    section("(3) erasure", lambda: erasure(root, scale, stores))
    section("(4) purge", lambda: purges(stores))
    return figures


def profile(root: Path, scale: Scale) -> str:
    """cProfile one engine run of each configuration: event loop and writer thread apart."""
    texts: list[str] = []
    for config in CONFIGS:
        key = generate_cipher_key() if config.encrypted else None
        store = Store(root / f"profile-{len(texts)}.db", config, key)
        loop_profile, writer_profile = cProfile.Profile(), cProfile.Profile()

        def opened(engine: WorkflowEngine, profiler: cProfile.Profile = writer_profile) -> None:
            save = engine._app.save_events

            def profiled_save(events: Any) -> None:  # runs on the writer thread
                profiler.enable()
                try:
                    save(events)
                finally:
                    profiler.disable()

            engine._app.save_events = profiled_save  # type: ignore[method-assign]

        loop_profile.runcall(asyncio.run, engine_run(store, scale.executions, opened=opened))
        for thread, profiler in (("event loop", loop_profile), ("writer thread", writer_profile)):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
            stats.print_stats(12)
            texts.append(f"cProfile of {config.name}, {thread}:\n{out.getvalue().strip()}")
    return "\n\n".join(texts)


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def table(figures: list[Figure], baseline: float | None) -> str:
    rows: list[tuple[str, ...]] = [("figure", "value", "unit", "of plain", "runs")]
    for f in figures:
        share = "" if f.share is None else f"{f.share:.0%}"
        runs = ", ".join(number(run) for run in f.runs)
        rows.append((f.name, "ERROR" if f.error else number(f.value), f.unit, share, runs))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows.insert(1, tuple("-" * w for w in widths))
    align = (str.ljust, str.rjust, str.ljust, str.rjust, str.ljust)
    lines = [
        "  ".join(a(c, w) for a, c, w in zip(align, row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += [f"\n{f.name}:\n  {f.error}" for f in figures if f.error]
    if baseline:
        lines.append("")
        lines += [
            f"{f.name}: {f.value / baseline:.2f} x the baseline's commits/s (steps share commits)"
            for f in figures
            if f.unit == "steps/s" and f.value
        ]
    return "\n".join([*lines, "", *NOTES])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (under 60 s)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--profile", action="store_true", help="also cProfile one engine run")
    args = parser.parse_args()
    logging.getLogger("flowledger").setLevel(logging.ERROR)
    scale, load_before = (QUICK if args.quick else FULL), load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowledger-compliance-", dir=args.dir) as tmp:
        root = Path(tmp)
        figures = measure(scale, root)
        profiled = profile(root, scale) if args.profile else ""
        filesystem = filesystem_of(root)
    info = {
        **run_info(),
        "load average 1/5/15 min (at the start)": load_before,
        "load average 1/5/15 min (at the end)": load_average(),
        "directory": str(root),
        "filesystem": filesystem,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_report(
        info, figures, NOTES, table(figures, figures[0].value), profiled, as_json=args.json
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
