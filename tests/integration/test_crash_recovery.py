"""Crash recovery with real processes: SIGKILL a worker anywhere, start another, compare.

DESIGN.md, invariant 2: a crash at any event boundary followed by recovery gives the
same final status and outputs as an uninterrupted run, no recorded completion is
repeated, and every execution ends terminal. Each scenario of
:mod:`tests.integration.crash_worker` is first run uninterrupted in a fresh store (the
reference); then, for each kill point, a worker is killed after a seeded random delay
(sometimes again while the next one recovers) and a last worker finishes on the same
store. The store is then read with a ``Ledger`` in this process and checked against the
reference and the actions' log (which says what was in flight at each kill).

A failing kill point names its scenario and seed; its store and log stay in pytest's
temporary directory for inspection.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowledger.domain.event_catalogue import TERMINAL_EVENTS
from flowledger.domain.state import ExecutionState, HistoryEntry
from flowledger.domain.status import ExecutionStatus
from flowledger.engine.ledger import Ledger
from tests.integration.crash_worker import PAUSE_INPUT, SCENARIOS

REPO_ROOT = Path(__file__).resolve().parents[2]

KILL_POINTS_PER_SCENARIO = 9
"""Kill points per scenario (six scenarios: 54 in all)."""

SECOND_KILL_SHARE = 0.3
"""The share of kill points that also kill the worker that recovers."""

PARALLEL_RUNS = 2
"""Kill points run at once (one per core)."""

WORKER_TIMEOUT = 20.0
"""Seconds a worker may take to reach its kill point or to finish."""

WORKER_ENV = {
    **{name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "flowledger-crash-pycache"),
}
"""Workers cache bytecode outside the repository: some 200 of them start per run."""

POLL_INTERVAL = 0.002
"""Seconds between two looks at the log while waiting for a worker to begin."""


# -- the actions' log ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One line the worker's actions wrote (see :mod:`tests.integration.crash_worker`)."""

    kind: str
    execution: str
    step: str
    invocation: int
    pid: int
    time: float


def read_log(path: Path) -> list[LogLine]:
    if not path.exists():
        return []
    lines = []
    # A line still being written (no newline yet) is left for the next look.
    for text in path.read_text().split("\n")[:-1]:
        kind, execution, step, invocation, pid, at = text.split()
        lines.append(LogLine(kind, execution, step, int(invocation), int(pid), float(at)))
    return lines


def in_flight(lines: list[LogLine], pid: int) -> frozenset[tuple[str, str]]:
    """(execution, step) of the actions process ``pid`` started and did not end."""
    started = {
        (x.execution, x.step, x.invocation) for x in lines if x.pid == pid and x.kind == "start"
    }
    ended = {
        (x.execution, x.step, x.invocation)
        for x in lines
        if x.pid == pid and x.kind in {"done", "fail"}
    }
    return frozenset((execution, step) for execution, step, _ in started - ended)


# -- worker processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """A worker killed with SIGKILL, and what its log says it had in flight."""

    pid: int
    log_length: int
    in_flight: frozenset[tuple[str, str]]


@dataclass
class Run:
    """One store and its actions' log, driven by successive worker processes."""

    directory: Path
    scenario: str
    point: str = "reference"
    """Which kill point: the seed of its random delays, or the crash option given."""
    kills: list[Kill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def store(self) -> str:
        return f"sqlite:///{self.directory / 'ledger.db'}"

    @property
    def log(self) -> Path:
        return self.directory / "actions.log"

    def spawn(self, *options: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "tests.integration.crash_worker"]
        command += ["--store", self.store, "--log", str(self.log), "--scenario", self.scenario]
        return subprocess.Popen(
            [*command, *options],
            cwd=REPO_ROOT,
            env=WORKER_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, *options: str) -> None:
        """Run a worker to the end: it must print ALL DONE and exit 0."""
        worker = self.spawn(*options)
        stdout, stderr = self._communicate(worker)
        if worker.returncode != 0 or "ALL DONE" not in stdout:
            pytest.fail(f"{self}: the worker exited {worker.returncode}\n{stdout}\n{stderr}")

    def kill_after(self, delay: float) -> bool:
        """Start a worker and SIGKILL it ``delay`` s after it begins; True if it died.

        A worker that finished before the delay ran out is not a kill point.
        """
        worker = self.spawn()
        self._wait_for_begin(worker)
        time.sleep(delay)  # the kill point itself: any moment of the run
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        stdout, stderr = self._communicate(worker)
        if worker.returncode == 0:
            return False
        if worker.returncode != -signal.SIGKILL:
            pytest.fail(f"{self}: the worker exited {worker.returncode}\n{stdout}\n{stderr}")
        self._record_kill(worker.pid)
        return True

    def crash(self, *options: str) -> None:
        """Run a worker told to kill itself at a given point (``--kill-at`` and so on)."""
        worker = self.spawn(*options)
        _, stderr = self._communicate(worker)
        if worker.returncode != -signal.SIGKILL:
            pytest.fail(f"{self}: the worker did not crash ({worker.returncode})\n{stderr}")
        self._record_kill(worker.pid)

    def _communicate(self, worker: subprocess.Popen[str]) -> tuple[str, str]:
        """Wait for the worker's end and output; kill it and fail if it takes too long."""
        try:
            return worker.communicate(timeout=WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
            pytest.fail(f"{self}: the worker did not end in {WORKER_TIMEOUT} s\n{stderr}")

    def _record_kill(self, pid: int) -> None:
        lines = read_log(self.log)
        self.kills.append(Kill(pid, len(lines), in_flight(lines, pid)))

    def _wait_for_begin(self, worker: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while time.monotonic() < deadline:
            if any(x.kind == "begin" and x.pid == worker.pid for x in read_log(self.log)):
                return
            if worker.poll() is not None:
                _, stderr = worker.communicate()
                pytest.fail(f"{self}: the worker exited {worker.returncode} early\n{stderr}")
            time.sleep(POLL_INTERVAL)
        worker.kill()
        worker.communicate()
        pytest.fail(f"{self}: the worker did not begin in {WORKER_TIMEOUT} s")

    def __str__(self) -> str:
        return f"scenario {self.scenario}, kill point {self.point!r}, store {self.directory}"


# -- what must match ----------------------------------------------------------------------


def outcome(state: ExecutionState) -> dict[str, Any]:
    """What a crash must not change: status, outputs, each step's end and the error."""
    return {
        "status": state.status,
        "outputs": state.outputs,
        "steps": {step_id: step.status for step_id, step in state.steps.items()},
        "compensations": {
            step_id: step.compensation_output
            for step_id, step in state.steps.items()
            if step.compensation_output is not None
        },
        "error": None if state.error is None else (state.error["type"], state.error["message"]),
    }


def outcomes(store: str) -> dict[str, dict[str, Any]]:
    with Ledger(store) as ledger:
        return {state.execution_id: outcome(state) for state in ledger.list(limit=None)}


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run of a scenario."""

    outcomes: dict[str, dict[str, Any]]
    work_seconds: float
    """From the worker's ``begin`` to its last action's end."""


def run_reference(directory: Path, scenario: str) -> Reference:
    run = Run(directory, scenario)
    run.finish()
    lines = read_log(run.log)
    return Reference(outcomes(run.store), lines[-1].time - lines[0].time)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    def reference(scenario: str) -> Reference:
        return run_reference(tmp_path_factory.mktemp(f"reference-{scenario}"), scenario)

    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        return dict(zip(SCENARIOS, pool.map(reference, SCENARIOS), strict=True))


# -- checks after recovery ----------------------------------------------------------------


def of(history: list[HistoryEntry], kind: str, step_id: str | None = None) -> list[HistoryEntry]:
    return [e for e in history if e.type == kind and (step_id is None or e.step_id == step_id)]


def assert_recovered(run: Run, reference: Reference) -> None:
    """The store after recovery matches the reference and keeps every promise."""
    assert outcomes(run.store) == reference.outcomes, run  # same ids: nothing started twice
    lines = read_log(run.log)
    with Ledger(run.store) as ledger:
        for execution_id in reference.outcomes:
            assert ledger.get(execution_id).status.is_terminal, run
            report = ledger.verify(execution_id)
            assert report.ok, f"{run}: {report.problems}"
            history = ledger.history(execution_id)
            where = f"{run}, execution {execution_id}"
            assert_recorded_once(history, where)
            assert_compensated_in_reverse(history, where)
            mine = [x for x in lines if x.execution == execution_id]
            assert_nothing_runs_after_its_completion(history, mine, where)
            for kill in run.kills:
                assert_in_flight_work_was_redone(history, kill, execution_id, lines, where)


def assert_recorded_once(history: list[HistoryEntry], where: str) -> None:
    completions = of(history, "StepCompleted")
    per_attempt = Counter((e.step_id, e.data["attempt"]) for e in completions)
    per_step = Counter(e.step_id for e in completions)
    rolled_back = Counter(e.step_id for e in of(history, "StepRolledBack"))
    assert max(per_attempt.values(), default=0) <= 1, f"{where}: {per_attempt}"
    assert max(per_step.values(), default=0) <= 1, f"{where}: {per_step}"
    assert max(rolled_back.values(), default=0) <= 1, f"{where}: {rolled_back}"
    ends = [e.type for e in history if e.type in TERMINAL_EVENTS]
    assert len(ends) == 1, f"{where}: {ends}"
    assert history[-1].type == ends[0], where


def assert_compensated_in_reverse(history: list[HistoryEntry], where: str) -> None:
    """Invariant 3: compensations are recorded in reverse completion order."""
    undone = [e.step_id for e in of(history, "StepRolledBack")]
    completed = [e.step_id for e in of(history, "StepCompleted") if e.step_id in undone]
    assert undone == completed[::-1], where


def assert_nothing_runs_after_its_completion(
    history: list[HistoryEntry], lines: list[LogLine], where: str
) -> None:
    """An action never starts again once its step's completion is recorded."""
    recorded = {e.step_id: e.timestamp.timestamp() for e in of(history, "StepCompleted")}
    recorded |= {
        f"{e.step_id}.undo": e.timestamp.timestamp() for e in of(history, "StepRolledBack")
    }
    late = [x for x in lines if x.kind == "start" and x.time > recorded.get(x.step, float("inf"))]
    assert not late, f"{where}: started after their completion was recorded: {late}"


def assert_in_flight_work_was_redone(
    history: list[HistoryEntry], kill: Kill, execution_id: str, lines: list[LogLine], where: str
) -> None:
    """An action in flight at a kill was recorded interrupted (steps) and ran again."""
    for execution, step in kill.in_flight:
        if execution != execution_id:
            continue
        again = [x for x in lines[kill.log_length :] if x.step == step and x.kind == "start"]
        assert again, f"{where}: {step} in flight at the kill of {kill.pid}, never run again"
        if step.endswith(".undo"):
            assert len(of(history, "StepRolledBack", step.removesuffix(".undo"))) == 1, where
            continue
        interrupted = of(history, "StepInterrupted", step)
        assert interrupted, f"{where}: {step} in flight at the kill, not recorded interrupted"
        restarts = [
            e for e in of(history, "StepStarted", step) if e.version > interrupted[-1].version
        ]
        assert restarts, f"{where}: {step} was recorded interrupted but never restarted"


# -- the tests ----------------------------------------------------------------------------


EXPECTED_ENDS = {
    "parallel": {"parallel-1": ExecutionStatus.COMPLETED},
    "retry": {"retry-1": ExecutionStatus.COMPLETED},
    "rollback": {"rollback-1": ExecutionStatus.ROLLED_BACK},
    "pause": {"pause-1": ExecutionStatus.COMPLETED},
    "branches": {"small-1": ExecutionStatus.COMPLETED, "large-1": ExecutionStatus.COMPLETED},
    "chain": {"chain-1": ExecutionStatus.COMPLETED},
}


def test_the_uninterrupted_runs_end_as_each_scenario_intends(
    references: dict[str, Reference],
) -> None:
    ends = {
        scenario: {key: found["status"] for key, found in reference.outcomes.items()}
        for scenario, reference in references.items()
    }
    assert ends == EXPECTED_ENDS
    assert references["chain"].outcomes["chain-1"]["outputs"]["s20"]["value"] == 20
    assert references["parallel"].outcomes["parallel-1"]["outputs"]["join"]["value"] == 18
    greeting = references["pause"].outcomes["pause-1"]["outputs"]["greet"]["greeting"]
    assert greeting == f"hello {PAUSE_INPUT['name']}"
    rollback = references["rollback"].outcomes["rollback-1"]
    assert set(rollback["compensations"]) == {"reserve", "charge", "ship"}
    assert rollback["steps"]["note"] == "COMPLETED"
    assert references["branches"].outcomes["small-1"]["steps"]["manager"] == "SKIPPED"
    assert references["branches"].outcomes["large-1"]["steps"]["auto"] == "SKIPPED"


@dataclass(frozen=True)
class KillPointTally:
    landed: int
    mid_step: int
    mid_compensation: int
    recovery_kills: int


def kill_and_recover(directory: Path, scenario: str, index: int, reference: Reference) -> Run:
    """One kill point: kill a worker at a seeded moment (maybe its successor too), finish."""
    seed = f"{scenario}-{index}"
    rng = random.Random(seed)
    first = rng.uniform(0.0, reference.work_seconds)
    second = (
        rng.uniform(0.0, reference.work_seconds / 2) if rng.random() < SECOND_KILL_SHARE else None
    )
    run = Run(directory, scenario, point=seed)
    if run.kill_after(first) and second is not None:
        run.kill_after(second)  # while the next worker recovers
    run.finish()
    return run


def tally(runs: list[Run]) -> KillPointTally:
    kills = [kill for run in runs for kill in run.kills]
    return KillPointTally(
        landed=sum(1 for run in runs if run.kills),
        mid_step=sum(1 for kill in kills if kill.in_flight),
        mid_compensation=sum(
            1 for kill in kills if any(step.endswith(".undo") for _, step in kill.in_flight)
        ),
        recovery_kills=sum(1 for run in runs if len(run.kills) > 1),
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_worker_killed_anywhere_recovers_to_the_uninterrupted_outcome(
    scenario: str, references: dict[str, Reference], tmp_path: Path
) -> None:
    reference = references[scenario]

    def kill_point(index: int) -> Run:
        return kill_and_recover(tmp_path / f"kill-{index}", scenario, index, reference)

    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        runs = list(pool.map(kill_point, range(KILL_POINTS_PER_SCENARIO)))

    for run in runs:
        assert_recovered(run, reference)
    counts = tally(runs)
    print(f"{scenario}: {counts}")  # the spread of kill points, under -s
    # Kills must land: a delay past the end of the run tests nothing.
    assert counts.landed >= KILL_POINTS_PER_SCENARIO // 2, counts


@pytest.mark.parametrize(
    ("scenario", "options"),
    [
        pytest.param("chain", ("--kill-at", "s07"), id="mid-action"),
        pytest.param("chain", ("--kill-before", "s07"), id="after-start-recorded"),
        pytest.param("parallel", ("--kill-at", "b3"), id="mid-parallel-branch"),
        pytest.param("retry", ("--kill-at", "flaky1"), id="mid-retried-action"),
        pytest.param("rollback", ("--kill-at", "charge.undo"), id="mid-compensation"),
    ],
)
def test_a_crash_at_a_chosen_point_recovers_to_the_uninterrupted_outcome(
    scenario: str, options: tuple[str, ...], references: dict[str, Reference], tmp_path: Path
) -> None:
    option, crashed = options
    run = Run(tmp_path, scenario, point=" ".join(options))

    run.crash(*options)
    run.finish()

    assert_recovered(run, references[scenario])
    (kill,) = run.kills
    ran = [x for x in read_log(run.log) if x.kind == "start" and x.step == crashed]
    (execution_id,) = references[scenario].outcomes
    with Ledger(run.store) as ledger:
        history = ledger.history(execution_id)
    if option == "--kill-at":  # the action ran when the process died, and ran again
        assert (execution_id, crashed) in kill.in_flight
        assert ran[0].pid == kill.pid
        assert len(ran) > 1
        assert kill.pid not in {x.pid for x in ran[1:]}
    else:  # its start was recorded, but the action never ran before the crash
        assert len(ran) == 1
        assert ran[0].pid != kill.pid
    if crashed.endswith(".undo"):
        assert len(of(history, "StepRolledBack", crashed.removesuffix(".undo"))) == 1
    else:
        interrupted = of(history, "StepInterrupted", crashed)
        assert [e.data["attempt"] for e in interrupted] == [1]


def test_a_crash_before_an_action_ran_does_not_use_up_its_retries(tmp_path: Path) -> None:
    # flaky1 and flaky2 fail twice each, then succeed: exactly max_attempts = 3.
    reference = run_reference(tmp_path / "reference", "tight_retry")
    assert reference.outcomes["tight-1"]["status"] is ExecutionStatus.COMPLETED
    run = Run(tmp_path / "crash", "tight_retry", point="--kill-before flaky1")

    run.crash("--kill-before", "flaky1")
    run.finish()

    assert outcomes(run.store) == reference.outcomes


def test_executions_that_outnumber_the_slots_all_finish(tmp_path: Path) -> None:
    # Three copies of six parallel branches on four slots, no crash at all.
    run = Run(tmp_path, "parallel", point="--start 3")

    run.finish("--start", "3", "--wait", "5")

    assert {found["status"] for found in outcomes(run.store).values()} == {"COMPLETED"}
