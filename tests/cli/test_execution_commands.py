"""``list``, ``show``, ``at``, ``cancel`` and ``pause`` on a SQLite store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowledger import WorkflowEngine
from flowledger.cli.main import run
from tests.cli import cli_actions
from tests.cli.conftest import ACTIONS_MODULE, FAILING, GREETING, HOLDING

Started = Callable[..., dict[str, Any]]
CliJson = Callable[..., tuple[int, Any]]

APPROVAL = {
    "id": "approval",
    "steps": [
        {**GREETING["steps"][0], "parameters": {"name": "fixed"}},
        {"id": "approve", "action": "echo", "parameters": {"by": "${input.approver}"}},
    ],
}
"""Completes a compensable step, then pauses waiting for ``${input.approver}``."""


@pytest.fixture
def three(started: Started) -> list[dict[str, Any]]:
    """Three executions: failed, paused, completed (started in that order)."""
    return [started(FAILING), started(GREETING), started(GREETING, "--input", '{"name": "x"}')]


class TestList:
    def test_newest_first_as_a_table(
        self, three: list[dict[str, Any]], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["list", "--store", store]) == 0
        rows = capsys.readouterr().out.splitlines()
        assert rows[0].split()[:3] == ["id", "workflow", "status"]
        ids = [row.split()[0] for row in rows[1:]]
        assert ids == [state["execution_id"] for state in reversed(three)]
        assert rows[1].split()[2:4] == ["COMPLETED", str(three[2]["version"])]

    def test_filters_and_json(
        self, three: list[dict[str, Any]], store: str, cli_json: CliJson
    ) -> None:
        _, paused = cli_json("list", "--status", "paused", "--store", store)
        assert [row["execution_id"] for row in paused] == [three[1]["execution_id"]]
        assert set(paused[0]) == {
            "execution_id", "workflow_id", "status", "version", "created_at", "updated_at",
        }  # fmt: skip
        _, greetings = cli_json("list", "--workflow", "greeting", "--limit", "1", "--store", store)
        assert [row["status"] for row in greetings] == ["COMPLETED"]

    def test_a_time_window(
        self, three: list[dict[str, Any]], store: str, cli_json: CliJson
    ) -> None:
        first, last = three[0]["created_at"], three[2]["created_at"]
        _, rows = cli_json("list", "--since", first, "--until", last, "--store", store)
        assert len(rows) == 3
        _, rows = cli_json("list", "--since", last.replace("+00:00", "Z"), "--store", store)
        assert [row["execution_id"] for row in rows] == [three[2]["execution_id"]]
        _, rows = cli_json("list", "--until", "2000-01-01T00:00:00+00:00", "--store", store)
        assert rows == []

    def test_a_naive_window_is_refused(
        self, three: list[dict[str, Any]], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["list", "--since", "2025-01-01T00:00:00", "--store", store]) == 2
        assert "Invalid value for '--since'" in capsys.readouterr().err

    def test_nothing_matches(
        self, three: list[dict[str, Any]], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["list", "--workflow", "other", "--store", store]) == 0
        assert capsys.readouterr().out == "no executions\n"

    def test_a_store_file_that_does_not_exist_is_not_created(
        self, store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(["list", "--store", store]) == 2
        assert "no such database file" in capsys.readouterr().err
        assert not Path(store.removeprefix("sqlite:///")).exists()

    def test_bad_option_values(self, three: list[dict[str, Any]], store: str) -> None:
        assert run(["list", "--status", "sleeping", "--store", store]) == 2
        assert run(["list", "--limit", "-1", "--store", store]) == 2


class TestShow:
    def test_state_with_steps_outputs_and_error(
        self, three: list[dict[str, Any]], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["show", three[0]["execution_id"], "--store", store]) == 0
        out = capsys.readouterr().out
        assert "status     FAILED" in out
        assert "error      NonRetryableError: it broke" in out
        steps = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[8:11]}
        assert steps == {
            "step": ["status", "attempts"],
            "first": ["COMPLETED", "1"],
            "boom": ["FAILED", "1"],
        }
        assert '\noutputs\n{\n  "first": {}\n}\n' in out

    def test_paused_on_and_json(
        self,
        three: list[dict[str, Any]],
        store: str,
        cli_json: CliJson,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        paused_id = three[1]["execution_id"]
        code, state = cli_json("show", paused_id, "--store", store)
        assert code == 0
        assert state == three[1]
        run(["show", paused_id, "--store", store])
        assert "paused on  ${input.name}" in capsys.readouterr().out

    def test_recorded_text_is_never_read_as_markup(
        self, started: Started, store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        state = started(GREETING, "--input", '{"name": "[bold]x[/bold]"}')
        capsys.readouterr()
        run(["show", state["execution_id"], "--store", store])
        assert "hello [bold]x[/bold]" in capsys.readouterr().out

    def test_a_terminal_gets_colour(
        self,
        three: list[dict[str, Any]],
        store: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        capsys.readouterr()
        assert run(["show", three[0]["execution_id"], "--store", store]) == 0
        assert "\x1b[1m" in capsys.readouterr().out  # bold names

    def test_unknown_id(
        self, three: list[dict[str, Any]], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["show", "nope", "--store", store]) == 2
        assert capsys.readouterr().err == "flowledger: execution nope not found\n"


class TestAt:
    def test_state_at_a_version(
        self,
        three: list[dict[str, Any]],
        store: str,
        cli_json: CliJson,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        execution_id = three[2]["execution_id"]
        code, state = cli_json("at", execution_id, "--version", "2", "--store", store)
        assert (code, state["version"], state["status"]) == (0, 2, "RUNNING")
        assert state["steps"]["greet"]["status"] == "RUNNING"
        run(["at", execution_id, "--version", "2", "--store", store])
        assert capsys.readouterr().out.startswith(f"execution {execution_id} at version 2\n")

    def test_state_at_a_time(
        self,
        three: list[dict[str, Any]],
        store: str,
        cli_json: CliJson,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        execution_id = three[2]["execution_id"]
        later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        code, state = cli_json("at", execution_id, "--time", later, "--store", store)
        assert (code, state) == (0, three[2])
        run(["at", execution_id, "--time", later.replace("+00:00", "Z"), "--store", store])
        assert "as of" in capsys.readouterr().out.splitlines()[0]

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["--version", "2", "--time", "2025-01-01T00:00:00Z"], "exactly one of"),
            ([], "exactly one of"),
            (["--time", "2025-01-01T00:00:00"], "has no UTC offset"),
            (["--time", "yesterday"], "is not an ISO 8601 time"),
            (["--time", "2000-01-01T00:00:00+00:00"], "had not started"),
            (["--version", "999"], "999"),
            (["--version", "0"], "--version"),
        ],
    )
    def test_refusals(
        self,
        options: list[str],
        message: str,
        three: list[dict[str, Any]],
        store: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        capsys.readouterr()
        assert run(["at", three[0]["execution_id"], *options, "--store", store]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert len(err.splitlines()) == 1


class TestCancel:
    def test_cancel_a_paused_execution_then_refuse_a_second_cancel(
        self, started: Started, store: str, cli_json: CliJson, capsys: pytest.CaptureFixture[str]
    ) -> None:
        execution_id = started(GREETING)["execution_id"]
        code, state = cli_json(
            "cancel", execution_id, "--reason", "no name", "--actor", "ops", "--store", store
        )
        assert (code, state["status"]) == (0, "CANCELLED")
        capsys.readouterr()
        assert run(["cancel", execution_id, "--store", store]) == 2
        err = capsys.readouterr().err
        assert err.startswith("flowledger: cannot ") and "in state CANCELLED" in err
        _, after = cli_json("show", execution_id, "--store", store)
        assert after["version"] == state["version"]
        _, history = cli_json("history", execution_id, "--store", store)
        requested = [event for event in history if event["type"] == "CancelRequested"]
        assert requested[0]["data"] == {"reason": "no name", "actor": "ops", "rollback": False}

    def test_cancel_with_rollback_compensates(
        self, started: Started, store: str, capsys: pytest.CaptureFixture[str], cli_json: CliJson
    ) -> None:
        execution_id = started(APPROVAL)["execution_id"]
        capsys.readouterr()
        argv = ["cancel", execution_id, "--rollback", "--actions", ACTIONS_MODULE]
        assert run([*argv, "--store", store]) == 0
        assert capsys.readouterr().out == f"execution {execution_id}: ROLLED_BACK\n"
        _, state = cli_json("show", execution_id, "--store", store)
        assert state["steps"]["greet"]["compensation_output"] == {"undone": "hello fixed"}


def _start_and_leave_running(store: str, execution_id: str) -> None:
    """Start HOLDING and stop its engine while its first step is in flight."""

    async def main() -> None:
        engine = WorkflowEngine(store, actions=cli_actions.actions, recover=False)
        async with engine:
            await engine.start_workflow(HOLDING, {}, execution_id=execution_id)
            async for note in engine.subscribe(execution_id):
                if note.status == "STEP_RUNNING":
                    break
        engine.close()

    asyncio.run(main())


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(cli_actions.RELEASE, "1")
    yield


class TestPause:
    def test_pause_then_resume_a_running_execution(
        self, store: str, cli_json: CliJson, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _start_and_leave_running(store, "held")
        code, state = cli_json(
            "pause", "held", "--reason", "audit", "--actor", "ann", "--store", store
        )
        assert (code, state["status"]) == (0, "PAUSED")
        monkeypatch.setenv(cli_actions.RELEASE, "1")
        code, state = cli_json(
            "resume", "held", "--input", '{"name": "fay"}', "--actions", ACTIONS_MODULE,
            "--store", store,
        )  # fmt: skip
        assert (code, state["status"]) == (0, "COMPLETED")
        assert state["outputs"] == {"held": {"held": True}, "greet": {"greeting": "hello fay"}}

    def test_pause_a_finished_execution_is_refused(
        self, started: Started, store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        execution_id = started(FAILING)["execution_id"]
        capsys.readouterr()
        assert run(["pause", execution_id, "--store", store]) == 2
        assert "in state FAILED" in capsys.readouterr().err

    def test_human_output_and_the_hint_to_resume(
        self, store: str, workflow: Callable[..., Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        _start_and_leave_running(store, "held-2")
        assert run(["pause", "held-2", "--store", store]) == 0
        assert capsys.readouterr().out == "execution held-2: PAUSED\n"
        argv = ["run", str(workflow(HOLDING)), "--execution-id", "held-2", "--store", store]
        assert run(argv) == 0
        assert (
            "paused by request; continue with: flowledger resume held-2" in capsys.readouterr().out
        )


def test_json_output_is_plain_json(
    three: list[dict[str, Any]], store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    run(["show", three[0]["execution_id"], "--store", store, "--json"])
    assert json.loads(capsys.readouterr().out)["status"] == "FAILED"
