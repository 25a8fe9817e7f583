"""``flowledger worker``: refuses a store it cannot share, runs and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowledger import ExecutionStatus, WorkflowEngine
from flowledger.cli.main import run
from tests.cli.conftest import ACTIONS_MODULE, GREETING

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_store_that_cannot_be_shared_is_refused(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["worker", "--store", store])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "needs postgresql://" in err


def test_a_bad_option_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["worker", "--store", "postgresql://u@h/db", "--concurrency", "0"])

    assert code == 2
    assert "--concurrency" in capsys.readouterr().err


async def test_a_worker_runs_what_is_left_to_it_and_stops_on_sigterm(postgres_url: str) -> None:
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "flowledger", "worker", "--store", postgres_url, "--json"),
            *("--actions", ACTIONS_MODULE, "--worker-id", "cli-worker", "--poll-interval", "0.05"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        started = json.loads(await asyncio.to_thread(worker.stdout.readline))
        client = WorkflowEngine(postgres_url, recover=False)
        async with client:
            execution_id = await client.start_workflow(GREETING, {"name": "al"}, run_here=False)
            state = await client.wait_for(execution_id, timeout=20)
        client.close()
        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(worker.communicate, timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert started == {"event": "started", "worker": "cli-worker"}
    assert state.status is ExecutionStatus.COMPLETED
    assert state.worker == "cli-worker"
    assert worker.returncode == 0, err
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["stopping", "stopped"]
