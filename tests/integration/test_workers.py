"""Several ``flowledger worker`` processes sharing one PostgreSQL store.

Real processes on a real server: three workers drive executions submitted from this
process with ``start_workflow(run_here=False)``. One worker is killed with SIGKILL while
it holds leases; the others must take its executions over once its leases expire, and
every execution must end as a single engine would have ended it, with each step's
completion recorded once, every history verifying, and an audit trail that says which
worker drove each part. Another worker is stopped with SIGTERM: it must finish its
steps in flight, hand its executions back (``ExecutionReleased``) and exit 0, and the
others must claim them.

The actions (:mod:`tests.integration.worker_actions`) log each call with the pid of
the process that ran it, so the test can check the history against what really ran.
Waits across processes poll the store (or the logs) against a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.domain.status import ExecutionStatus, StepStatus
from flowledger.engine.engine import WorkflowEngine
from flowledger.engine.leases import TABLE
from flowledger.engine.ledger import Ledger
from flowledger.engine.stores import parse_store_url
from tests.integration.worker_actions import (
    FANOUT,
    FANOUT_STEPS,
    LOG_DIR_ENV,
    SLEEP_ENV,
    actions,
)
from tests.postgres import connect

REPO_ROOT = Path(__file__).resolve().parents[2]

LEASE_SECONDS = 2.0
"""Workers' lease time: small, so a killed worker's executions are taken over quickly."""

POLL_INTERVAL = 0.05
"""Workers' seconds between two looks for work."""

CONCURRENCY = 8
"""Steps each worker runs at once (it drives up to twice as many executions)."""

TAKEOVER_SLACK = 2.0
"""Seconds beyond lease and poll interval a takeover may take (a loaded 2-core machine)."""

STARTUP_TIMEOUT = 30.0
"""Seconds a worker may take to say it started."""

RUN_TIMEOUT = 45.0
"""Seconds every execution may take to finish, from the last submission."""

STOP_TIMEOUT = 15.0
"""Seconds a worker told to stop may take to exit."""

CHECK_INTERVAL = 0.02
"""Seconds between two looks at the store or the logs while waiting for a condition."""

FLOWLEDGER = [sys.executable, "-m", "flowledger"]
"""How to run the ``flowledger`` command."""


# -- the actions' logs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One line an action wrote: ``start`` or ``done`` of a step, by a process."""

    kind: str
    execution: str
    step: str
    pid: int
    time: float


def read_calls(directory: Path) -> list[Call]:
    """Every complete line of every process's log."""
    calls = []
    for path in sorted(directory.glob("*.log")):
        # A line still being written (no newline yet) is left for the next look.
        for text in path.read_text().split("\n")[:-1]:
            kind, execution, step, pid, at = text.split()
            calls.append(Call(kind, execution, step, int(pid), float(at)))
    return calls


def in_flight(calls: list[Call], pid: int) -> set[tuple[str, str]]:
    """(execution, step) whose action process ``pid`` started and has not ended."""
    started = Counter((c.execution, c.step) for c in calls if c.pid == pid and c.kind == "start")
    ended = Counter((c.execution, c.step) for c in calls if c.pid == pid and c.kind == "done")
    return set(started - ended)


# -- worker processes -----------------------------------------------------------------------


@dataclass
class Worker:
    """A ``flowledger worker`` process, its output going to files (a pipe could fill up)."""

    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return f"{self.name} (pid {self.pid}):\n{self.stdout.read_text()}{self.stderr.read_text()}"


@dataclass
class Cluster:
    """Worker processes on one store, every one of them ended when the test ends."""

    store: str
    directory: Path
    sleep: float
    workers: list[Worker] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.directory / "actions"

    def spawn(self, name: str) -> Worker:
        self.logs.mkdir(parents=True, exist_ok=True)
        options = ["--store", self.store, "--actions", "tests.integration.worker_actions"]
        options += ["--worker-id", name, "--concurrency", str(CONCURRENCY), "--json"]
        options += ["--lease-seconds", str(LEASE_SECONDS), "--poll-interval", str(POLL_INTERVAL)]
        env = {**os.environ, LOG_DIR_ENV: str(self.logs), SLEEP_ENV: str(self.sleep)}
        stdout, stderr = self.directory / f"{name}.out", self.directory / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [*FLOWLEDGER, "worker", *options], cwd=REPO_ROOT, env=env, stdout=out, stderr=err
            )
        worker = Worker(name, process, stdout, stderr)
        self.workers.append(worker)
        return worker

    async def start(self, count: int) -> list[Worker]:
        """Start ``count`` workers, one after the other, each once the last said it started.

        One at a time: workers opening one store at the same moment can fail on
        PostgreSQL's catalogue ("tuple concurrently updated", "duplicate key value ...
        pg_type_typname_nsp_index"), which is not what these tests are about.
        """
        started = []
        for n in range(count):
            worker = self.spawn(f"w{n}")

            def said_started(worker: Worker = worker) -> bool:
                if worker.process.poll() is not None:
                    pytest.fail(f"a worker exited {worker.process.returncode}\n{worker.output()}")
                return '"started"' in worker.stdout.read_text()

            await wait_until(said_started, STARTUP_TIMEOUT, f"{worker.name} to start")
            started.append(worker)
        return started

    def end_all(self) -> None:
        """Stop every worker still running: SIGTERM, then SIGKILL if it lingers."""
        running = [w for w in self.workers if w.process.poll() is None]
        for worker in running:
            worker.process.send_signal(signal.SIGTERM)
        for worker in running:
            try:
                worker.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


@pytest.fixture
def cluster_factory(postgres_url: str, tmp_path: Path) -> Iterator[Callable[[float], Cluster]]:
    """Make a cluster on the test's store; whatever happens, no worker outlives the test."""
    clusters: list[Cluster] = []

    def make(sleep: float) -> Cluster:
        clusters.append(Cluster(postgres_url, tmp_path, sleep))
        return clusters[-1]

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.end_all()


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (a quick look at the store or the logs) until it holds.

    Fails after ``timeout`` seconds. Other processes change what it looks at, so there
    is nothing to await but the next look.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        await asyncio.sleep(CHECK_INTERVAL)


# -- the store: lease rows, submissions, histories --------------------------------------------


def lease_rows(store: str) -> list[tuple[str, str | None, bool]]:
    """Every lease row: (execution, worker, whether its lease is still running)."""
    from psycopg import sql  # the driver is an extra: missing, the fixture skips the tests

    schema = parse_store_url(store).env["POSTGRES_SCHEMA"]
    query = sql.SQL(
        "SELECT execution_id, worker, expires_at >= extract(epoch from clock_timestamp()) FROM {}"
    ).format(sql.Identifier(schema, TABLE))
    with closing(connect(store)) as db:
        return [(row[0], row[1], bool(row[2])) for row in db.execute(query).fetchall()]


def held_by(store: str, worker: str) -> set[str]:
    """The executions whose running lease ``worker`` holds."""
    return {key for key, holder, running in lease_rows(store) if holder == worker and running}


@asynccontextmanager
async def submitter(store: str) -> AsyncIterator[WorkflowEngine]:
    """An engine in this process that submits executions and claims none (``recover=False``).

    It lives as long as the test: stopping it right after a ``run_here=False`` start
    can hang (see the module's docstring), so it is stopped at the end, long after its
    last start, and a stop that hangs anyway fails the test.
    """
    engine = WorkflowEngine(store, recover=False)
    try:
        await engine.start()
        yield engine
    finally:
        try:
            await asyncio.wait_for(engine.stop(), STOP_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"the submitting engine's stop() did not return in {STOP_TIMEOUT} s")
        finally:
            engine.close()


async def submit(engine: WorkflowEngine, keys: list[str]) -> None:
    """Start one execution per key, each left to whichever worker claims it first."""
    starts = (
        engine.start_workflow(FANOUT, fanout_input(key), execution_id=key, run_here=False)
        for key in keys
    )
    await asyncio.gather(*starts)


def fanout_input(key: str) -> dict[str, Any]:
    return {"key": key, "n": int(key.rsplit("-", 1)[1])}


async def reference_outputs(keys: list[str]) -> dict[str, dict[str, Any]]:
    """The outputs one engine on ``memory://`` gives for the same definition and inputs."""
    async with WorkflowEngine("memory://", actions=actions, max_concurrent_steps=50) as engine:
        starts = (engine.start_workflow(FANOUT, fanout_input(k), execution_id=k) for k in keys)
        await asyncio.gather(*starts)
        states = [await engine.wait_for(key) for key in keys]
    assert {state.status for state in states} == {ExecutionStatus.COMPLETED}
    return {state.execution_id: state.outputs for state in states}


async def wait_for_all(store: str, keys: list[str]) -> None:
    """Wait until no execution has a lease row left: each one rests (or its row vanished).

    What the rows say is checked against the histories afterwards.
    """
    what = f"{len(keys)} executions to finish"
    await wait_until(lambda: not lease_rows(store), RUN_TIMEOUT, what)


@dataclass(frozen=True)
class Recorded:
    """What the store holds at the end, read in this process."""

    states: dict[str, ExecutionState]
    histories: dict[str, list[HistoryEntry]]


def read_store(store: str, keys: list[str]) -> Recorded:
    with Ledger(store) as ledger:
        report = ledger.verify()
        assert report.ok, report.problems
        assert report.executions == len(keys)
        return Recorded(
            {key: ledger.get(key) for key in keys}, {key: ledger.history(key) for key in keys}
        )


def of(history: list[HistoryEntry], *kinds: str) -> list[HistoryEntry]:
    return [entry for entry in history if entry.type in kinds]


DRIVING = ("ExecutionClaimed", "ExecutionTakenOver")


def driver_at(history: list[HistoryEntry], version: int) -> str | None:
    """The worker driving the execution just before event ``version``, by the history."""
    worker = None
    for entry in history:
        if entry.version >= version:
            break
        if entry.type in DRIVING:
            worker = entry.data["worker"]
        elif entry.type == "ExecutionReleased":
            worker = None
    return worker


# -- checks both tests make -----------------------------------------------------------------


def assert_completed_as_one_engine_would(recorded: Recorded, expected: dict[str, Any]) -> None:
    ends = Counter(state.status for state in recorded.states.values())
    assert ends == {ExecutionStatus.COMPLETED: len(expected)}, ends
    wrong = [key for key, state in recorded.states.items() if state.outputs != expected[key]]
    assert not wrong, f"outputs differ from the single-engine run: {wrong[:5]}"


def assert_each_step_completed_once(recorded: Recorded) -> None:
    for key, history in recorded.histories.items():
        completions = Counter(entry.step_id for entry in of(history, "StepCompleted"))
        assert completions == dict.fromkeys(FANOUT_STEPS, 1), f"{key}: {completions}"


def assert_audit_names_the_worker_that_ran_each_step(
    recorded: Recorded, calls: list[Call], pids: dict[str, int]
) -> None:
    """Each completion was recorded while a worker held the execution, and that worker ran it.

    The history says which worker drove the execution when a step's completion was
    recorded; the actions' logs say which process ran the step. They must agree.
    """
    ran = {(c.execution, c.step, c.pid) for c in calls if c.kind == "done"}
    for key, history in recorded.histories.items():
        for completion in of(history, "StepCompleted"):
            worker = driver_at(history, completion.version)
            assert worker is not None, f"{key}: {completion.step_id} completed, nobody driving"
            assert (key, completion.step_id, pids[worker]) in ran, (
                f"{key}: the history says {worker} completed {completion.step_id}, "
                "but its process never ran it"
            )


# -- the tests --------------------------------------------------------------------------------


EXECUTIONS = 300
"""Executions of the SIGKILL test (six steps each)."""

WORKERS = 3
"""Worker processes of the SIGKILL test."""

DONE_BEFORE_KILL = 30
"""Executions that must have finished before the victim is killed."""


@dataclass(frozen=True)
class Kill:
    """A worker killed with SIGKILL, and what it left behind."""

    worker: Worker
    at: float
    """Unix time just after the kill."""
    orphans: frozenset[str]
    """The executions whose lease rows it held when it died."""
    in_flight: frozenset[tuple[str, str]]
    """(execution, step) whose action it had started and not ended."""
    waiting: int
    """Free lease rows (executions nobody had claimed yet) at the kill."""


def kill(worker: Worker, store: str, logs: Path) -> Kill:
    worker.process.kill()
    at = time.time()
    assert worker.process.wait(STOP_TIMEOUT) == -signal.SIGKILL
    rows = lease_rows(store)  # its rows are frozen now: those it held when it died
    return Kill(
        worker,
        at,
        frozenset(key for key, holder, _ in rows if holder == worker.name),
        frozenset(in_flight(read_calls(logs), worker.pid)),
        sum(1 for _, holder, _ in rows if holder is None),
    )


def assert_taken_over(recorded: Recorded, calls: list[Call], kill: Kill) -> dict[str, float]:
    """The killed worker's executions were taken over in time; return each one's delay.

    A takeover can happen once the lease ran out (at most ``LEASE_SECONDS`` after the
    kill) and a surviving worker next looks for work (its poll interval); the slack
    covers a loaded machine. The killed worker's unfinished actions ran again elsewhere
    and its steps left RUNNING were recorded interrupted.
    """
    name = kill.worker.name
    takeovers = {
        key: entry
        for key, history in recorded.histories.items()
        for entry in of(history, "ExecutionTakenOver")
        if entry.data["previous_worker"] == name
    }
    assert kill.orphans, "the victim held no lease when it was killed"
    assert takeovers, "nobody took over from the killed worker"
    # An execution the victim ended just before dying (its row not yet dropped) rests:
    # whoever claims the row drops it, with nothing to take over.
    ended = {key for key in kill.orphans if ended_at(recorded, key) < kill.at}
    assert kill.orphans - ended <= set(takeovers), kill.orphans - ended - set(takeovers)
    bound = LEASE_SECONDS + POLL_INTERVAL + TAKEOVER_SLACK
    delays = {key: entry.timestamp.timestamp() - kill.at for key, entry in takeovers.items()}
    late = {key: round(delay, 2) for key, delay in delays.items() if not 0 < delay <= bound}
    assert not late, (
        f"takeovers not within {bound} s of the kill ({kill.waiting} executions were "
        f"waiting unclaimed at the kill): {late}"
    )
    for execution, step in kill.in_flight:
        ran = {c.pid for c in calls if (c.kind, c.execution, c.step) == ("done", execution, step)}
        assert ran - {kill.worker.pid}, f"{execution}/{step} never ran again after the kill"
        interrupted = of(recorded.histories[execution], "StepInterrupted")
        assert any(entry.step_id == step for entry in interrupted), (
            f"{execution}/{step} was in flight at the kill but not recorded interrupted"
        )
    return delays


def ended_at(recorded: Recorded, key: str) -> float:
    """When the execution reached a terminal state (infinity if it never did)."""
    state = recorded.states[key]
    return state.updated_at.timestamp() if state.status.is_terminal else float("inf")


def completions_by_worker(recorded: Recorded) -> dict[str | None, list[float]]:
    """The times of the step completions each worker drove, by the history."""
    found: dict[str | None, list[float]] = {}
    for history in recorded.histories.values():
        for entry in of(history, "StepCompleted"):
            worker = driver_at(history, entry.version)
            found.setdefault(worker, []).append(entry.timestamp.timestamp())
    return found


async def test_a_killed_workers_executions_are_taken_over_and_end_as_one_engine_would(
    cluster_factory: Callable[[float], Cluster],
) -> None:
    keys = [f"kill-{n}" for n in range(EXECUTIONS)]
    expected = await reference_outputs(keys)
    cluster = cluster_factory(0.02)
    store = cluster.store

    async with submitter(store) as engine:  # creates the store's tables first
        workers = await cluster.start(WORKERS)
        victim = workers[0]
        began = time.monotonic()
        await submit(engine, keys)

        def victim_is_busy_and_some_are_done() -> bool:
            rows = lease_rows(store)
            held = sum(1 for _, holder, running in rows if holder == victim.name and running)
            return len(rows) <= EXECUTIONS - DONE_BEFORE_KILL and held > 0

        await wait_until(victim_is_busy_and_some_are_done, RUN_TIMEOUT, "the victim to be busy")
        killed = kill(victim, store, cluster.logs)
        await wait_for_all(store, keys)
        took = time.monotonic() - began

    recorded = read_store(store, keys)
    calls = read_calls(cluster.logs)
    assert_completed_as_one_engine_would(recorded, expected)
    assert_each_step_completed_once(recorded)
    pids = {worker.name: worker.pid for worker in workers}
    assert_audit_names_the_worker_that_ran_each_step(recorded, calls, pids)
    by_worker = completions_by_worker(recorded)
    assert by_worker.get(victim.name), "the audit credits the killed worker with nothing"
    assert max(by_worker[victim.name]) < killed.at, "completions credited to a dead worker"
    delays = assert_taken_over(recorded, calls, killed)
    shares = {worker: len(times) for worker, times in by_worker.items()}
    print(  # under -s: how the work was shared and how long the takeover took
        f"\n{EXECUTIONS} executions in {took:.1f} s; completions by worker {shares}; "
        f"{len(delays)} of {len(killed.orphans)} orphans taken over "
        f"{min(delays.values()):.2f}-{max(delays.values()):.2f} s after the kill "
        f"({killed.waiting} unclaimed then); {len(killed.in_flight)} actions in flight"
    )


RELEASE_EXECUTIONS = 60
"""Executions of the SIGTERM test."""


async def test_a_worker_stopped_with_sigterm_hands_its_executions_back(
    cluster_factory: Callable[[float], Cluster],
) -> None:
    keys = [f"term-{n}" for n in range(RELEASE_EXECUTIONS)]
    expected = await reference_outputs(keys)
    cluster = cluster_factory(0.1)  # longer actions: steps are in flight at the signal
    store = cluster.store

    async with submitter(store) as engine:  # creates the store's tables first
        workers = await cluster.start(2)
        leaving = workers[0]
        pids = {worker.name: worker.pid for worker in workers}
        await submit(engine, keys)

        def leaving_is_mid_step() -> bool:
            busy = in_flight(read_calls(cluster.logs), leaving.pid)
            return bool(busy) and bool(held_by(store, leaving.name))

        await wait_until(leaving_is_mid_step, RUN_TIMEOUT, "the worker to be mid-step")
        leaving.process.send_signal(signal.SIGTERM)
        try:
            exit_code = await asyncio.to_thread(leaving.process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {STOP_TIMEOUT} s after SIGTERM\n{leaving.output()}")
        assert exit_code == 0, leaving.output()
        assert '"stopped"' in leaving.stdout.read_text(), leaving.output()
        kept = {key for key, holder, _ in lease_rows(store) if holder == leaving.name}
        assert not kept, f"leases kept by the stopped worker: {kept}"
        assert not in_flight(read_calls(cluster.logs), leaving.pid), "steps abandoned"
        await wait_for_all(store, keys)

    recorded = read_store(store, keys)
    assert_completed_as_one_engine_would(recorded, expected)
    assert_each_step_completed_once(recorded)
    assert_audit_names_the_worker_that_ran_each_step(recorded, read_calls(cluster.logs), pids)
    released = {
        key: entry
        for key, history in recorded.histories.items()
        for entry in of(history, "ExecutionReleased")
        if entry.data["worker"] == leaving.name
    }
    assert released, "the stopped worker handed nothing back"
    with Ledger(store) as ledger:
        for key, release in released.items():
            at_release = ledger.get(key, version=release.version)
            running = [
                s.step_id for s in at_release.steps.values() if s.status is StepStatus.RUNNING
            ]
            assert not running, f"{key}: released with {running} RUNNING"
            assert at_release.worker is None, key
            claims = [
                e
                for e in of(recorded.histories[key], "ExecutionClaimed")
                if e.version > release.version
            ]
            assert claims, f"{key}: released, never claimed again"
            assert claims[0].data["worker"] != leaving.name, key
    taken = [
        key
        for key, history in recorded.histories.items()
        for entry in of(history, "ExecutionTakenOver")
        if entry.data["previous_worker"] == leaving.name
    ]
    assert not taken, f"a graceful stop left leases to expire: {taken}"
