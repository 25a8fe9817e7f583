"""The installed ``flowledger`` command, run as a process on a temporary SQLite file.

One test walks the main path through every command; the others check that bad input
exits 2 with one line on stderr and no traceback. Detail is tested in process.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import ACTIONS_PATH, GREETING, HERE
from tests.cli.test_definition_commands import FLOWLEDGER

EXAMPLES = HERE.parents[1] / "examples"
ORDER = '{"order_id": "o-1", "amount": 42.5, "sku": "BOOK-1"}'


def flowledger(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "FLOWLEDGER_STORE"}
    return subprocess.run(
        [str(FLOWLEDGER), *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = flowledger("--help", cwd=tmp_path)
    assert result.returncode == 0
    listed = result.stdout.split("Commands:")[1]
    commands = [line.split()[0] for line in listed.strip().splitlines()]
    assert commands == [
        "validate", "graph", "run", "list", "show", "history", "at", "verify", "cancel",
        "pause", "resume", "retry", "skip", "worker", "export", "import", "verify-bundle",
        "keygen", "cipher-key", "forget", "hold", "release", "purge", "certificate", "diff",
        "replay", "metrics",
    ]  # fmt: skip


def test_main_path_on_the_default_store(tmp_path: Path) -> None:
    run = flowledger(
        "run", str(EXAMPLES / "order_fulfilment.yaml"),
        "--actions", str(EXAMPLES / "order_fulfilment.py"),
        "--input", ORDER, "--execution-id", "order-1", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "  step charge_card attempt 2 scheduled not before " in run.stdout
    assert "\nexecution order-1: COMPLETED\n" in run.stdout
    assert (tmp_path / "flowledger.db").is_file()  # sqlite:///flowledger.db by default

    listed = json.loads(flowledger("list", "--json", cwd=tmp_path).stdout)
    assert [row["status"] for row in listed] == ["COMPLETED"]
    shown = flowledger("show", "order-1", cwd=tmp_path)
    assert "status     COMPLETED" in shown.stdout
    history = flowledger("history", "order-1", cwd=tmp_path)
    assert "StepRetryScheduled" in history.stdout
    assert flowledger("at", "order-1", "--version", "3", cwd=tmp_path).returncode == 0
    assert flowledger("verify", cwd=tmp_path).stdout.startswith("verified: 1 execution(s)")
    graph = flowledger("graph", "--execution", "order-1", cwd=tmp_path)
    assert graph.stdout.count("classDef completed") == 1
    exported = flowledger("export", "order-1", "--output", "bundle.json", cwd=tmp_path)
    assert exported.returncode == 0
    assert json.loads((tmp_path / "bundle.json").read_text())["workflow_id"] == "order-fulfilment"
    other = ("--store", "sqlite:///elsewhere.db")
    assert flowledger("import", "bundle.json", *other, cwd=tmp_path).returncode == 0
    assert flowledger("verify", "order-1", *other, cwd=tmp_path).returncode == 0
    diff = flowledger("diff", "order-1", "--from", "1", "--to", "3", cwd=tmp_path)
    assert "step validate_order: status: PENDING -> " in diff.stdout
    replay = flowledger("replay", "order-1", str(EXAMPLES / "order_fulfilment.yaml"), cwd=tmp_path)
    assert "first divergence: none" in replay.stdout
    metrics = json.loads(flowledger("metrics", "--json", cwd=tmp_path).stdout)
    charge = next(row for row in metrics if row["action"] == "charge_card")
    assert (charge["count"], charge["failed"], charge["retries"]) == (2, 1, 1)


def test_pause_resume_and_a_refused_cancel(tmp_path: Path) -> None:
    (tmp_path / "greeting.json").write_text(json.dumps(GREETING), encoding="utf-8")
    actions = ("--actions", str(ACTIONS_PATH))
    paused = flowledger("run", "greeting.json", *actions, "--json", cwd=tmp_path)
    state = json.loads(paused.stdout)
    assert (paused.returncode, state["status"]) == (0, "PAUSED")
    resumed = flowledger(
        "resume", state["execution_id"], *actions, "--input", '{"name": "al"}', cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "COMPLETED" in resumed.stdout
    refused = flowledger("cancel", state["execution_id"], cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("flowledger: cannot ")
    assert len(refused.stderr.splitlines()) == 1


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose default store holds one failed execution, ``failed``."""
    directory = tmp_path_factory.mktemp("recorded")
    definition = {
        "id": "w",
        "steps": [{"id": "a", "action": "fail", "parameters": {"retryable": False}}],
    }
    (directory / "w.json").write_text(json.dumps(definition), encoding="utf-8")
    (directory / "cut.json").write_text('{"id": "w", "steps": [', encoding="utf-8")
    result = flowledger("run", "w.json", "--execution-id", "failed", cwd=directory)
    assert result.returncode == 1  # a failed execution
    return directory


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "missing.yaml"],
        ["run", "w.json", "--input", '{"name": "x'],
        ["run", "cut.json"],
        ["show", "no-such-execution"],
        ["list", "--store", "mysql://localhost/db"],
        ["at", "failed", "--version", "1", "--time", "2025-01-01T00:00:00Z"],
        ["import", "cut.json"],
        ["diff", "failed", "--from", "yesterday"],
        ["replay", "no-such-execution", "w.json"],
    ],
    ids=[
        "missing-file",
        "truncated-input",
        "truncated-definition",
        "unknown-id",
        "bad-store",
        "version-and-time",
        "truncated-bundle",
        "bad-moment",
        "replay-unknown-id",
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], recorded: Path) -> None:
    result = flowledger(*argv, cwd=recorded)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("flowledger: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
