"""``run`` and ``resume``: live progress, final state, exit codes, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger.cli.main import run
from tests.cli.conftest import ACTIONS_MODULE, ACTIONS_PATH, FAILING, GREETING, HERE

EXAMPLES = HERE.parents[1] / "examples"

Workflow = Callable[[dict[str, Any]], Path]


def progress_of(out: str) -> list[str]:
    """The live-progress lines of an output, without their times."""
    return [line[14:] for line in out.splitlines() if line[:2].isdigit() and line[2] == ":"]


class TestRun:
    def test_progress_then_final_status_and_outputs(
        self, store: str, workflow: Workflow, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = workflow(GREETING)
        argv = ["run", str(path), "--actions", ACTIONS_MODULE, "--store", store]
        code = run([*argv, "--input", '{"name": "ann"}'])
        out = capsys.readouterr().out
        assert code == 0
        progress = progress_of(out)
        assert "of workflow greeting started" in progress[0]
        expected = [
            "step greet attempt 1 started",
            "step greet attempt 1 completed in",
            "step shout attempt 1 started",
            "step shout attempt 1 completed in",
            "execution completed",
        ]
        assert len(progress) == 1 + len(expected)
        assert all(
            line.startswith(start) for line, start in zip(progress[1:], expected, strict=True)
        )
        assert ": COMPLETED" in out
        outputs = json.loads(out[out.index("outputs:\n") + len("outputs:\n") :])
        assert outputs["shout"] == {"text": "hello ann!"}

    def test_json_prints_only_the_final_state(
        self, workflow: Workflow, store: str, cli_json: Callable[..., tuple[int, Any]]
    ) -> None:
        path = workflow(GREETING)
        code, state = cli_json(
            "run", str(path), "--actions", str(ACTIONS_PATH), "--store", store,
            "--input", '{"name": "bo"}',
        )  # fmt: skip
        assert code == 0
        assert state["status"] == "COMPLETED"
        assert state["steps"]["greet"]["status"] == "COMPLETED"
        assert state["steps"]["greet"]["attempts"] == 1
        assert state["outputs"]["greet"] == {"greeting": "hello bo"}
        assert state["created_at"].endswith("+00:00")

    def test_a_failed_execution_exits_1_with_its_error(
        self, store: str, workflow: Workflow, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = workflow(FAILING)
        code = run(["run", str(path), "--actions", ACTIONS_MODULE, "--store", store])
        out = capsys.readouterr().out
        assert code == 1
        assert ": FAILED" in out
        assert "error: NonRetryableError: it broke" in out
        assert "step boom attempt 1 failed after" in progress_of(out)[-2]

    def test_a_pause_exits_0_naming_the_missing_input_and_the_resume_command(
        self, store: str, workflow: Workflow, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = workflow(GREETING)
        code = run(["run", str(path), "--actions", ACTIONS_MODULE, "--store", store])
        out = capsys.readouterr().out
        assert code == 0
        assert ": PAUSED" in out
        assert "waiting for ${input.name}" in out
        assert f'--actions {ACTIONS_MODULE} --input \'{{"name": "..."}}\'' in out

    def test_the_example_runs_with_its_module_by_path(
        self, store: str, cli_json: Callable[..., tuple[int, Any]]
    ) -> None:
        order = '{"order_id": "o-1", "amount": 10, "sku": "BOOK"}'
        code, state = cli_json(
            "run", str(EXAMPLES / "order_fulfilment.yaml"),
            "--actions", str(EXAMPLES / "order_fulfilment.py"),
            "--input", order, "--store", store, "--max-concurrent", "1",
        )  # fmt: skip
        assert code == 0
        assert state["steps"]["charge_card"]["attempts"] == 2  # one retried failure
        assert state["outputs"]["ship"]["tracking"] == "TRK-o-1"

    def test_an_existing_execution_id_runs_nothing_twice(
        self,
        started: Callable[..., dict[str, Any]],
        workflow: Workflow,
        store: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        first = started(FAILING, "--execution-id", "once")
        argv = ["run", str(workflow(FAILING)), "--execution-id", "once", "--store", store]
        code = run([*argv, "--json"])
        captured = capsys.readouterr()
        assert code == 1  # it had failed
        assert json.loads(captured.out) == first
        assert "exists already; nothing was started" in captured.err

    def test_input_from_a_file_and_the_in_process_store(
        self, tmp_path: Path, workflow: Workflow, cli_json: Callable[..., tuple[int, Any]]
    ) -> None:
        (tmp_path / "in.json").write_text('{"name": "cy"}', encoding="utf-8")
        code, state = cli_json(
            "run", str(workflow(GREETING)), "--actions", ACTIONS_MODULE,
            "--input", f"@{tmp_path / 'in.json'}", "--store", "memory://",
        )  # fmt: skip
        assert code == 0
        assert state["input"] == {"name": "cy"}

    def test_the_built_in_actions_need_no_module(
        self, store: str, workflow: Workflow, cli_json: Callable[..., tuple[int, Any]]
    ) -> None:
        definition = {"id": "plain", "steps": [{"id": "a", "action": "noop"}]}
        code, state = cli_json("run", str(workflow(definition)), "--store", store)
        assert (code, state["status"]) == (0, "COMPLETED")


class TestResume:
    def test_resume_provides_the_input_and_follows_to_the_end(
        self,
        started: Callable[..., dict[str, Any]],
        store: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        paused = started(GREETING)
        assert paused["status"] == "PAUSED"
        argv = ["resume", paused["execution_id"], "--store", store, "--actions", ACTIONS_MODULE]
        code = run([*argv, "--input", '{"name": "di"}', "--actor", "ops"])
        out = capsys.readouterr().out
        assert code == 0
        progress = progress_of(out)
        assert progress[0] == "execution resumed by ops"  # nothing from before the resume
        assert progress[-1].startswith("execution completed")
        assert '"greeting": "hello di"' in out

    def test_resume_json_and_a_second_resume_is_refused(
        self,
        started: Callable[..., dict[str, Any]],
        store: str,
        cli_json: Callable[..., tuple[int, Any]],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        execution_id = started(GREETING)["execution_id"]
        code, state = cli_json(
            "resume", execution_id, "--store", store, "--actions", ACTIONS_MODULE,
            "--input", '{"name": "ed"}',
        )  # fmt: skip
        assert (code, state["status"]) == (0, "COMPLETED")
        code = run(["resume", execution_id, "--store", store])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("flowledger: cannot resume execution")
        assert len(err.splitlines()) == 1
        _, after = cli_json("show", execution_id, "--store", store)
        assert after["version"] == state["version"]  # the refusal recorded nothing

    def test_resume_without_input_pauses_again(
        self,
        started: Callable[..., dict[str, Any]],
        store: str,
        cli_json: Callable[..., tuple[int, Any]],
    ) -> None:
        execution_id = started(GREETING)["execution_id"]
        code, state = cli_json(
            "resume", execution_id, "--store", store, "--actions", ACTIONS_MODULE
        )
        assert (code, state["status"], state["paused_on"]) == (0, "PAUSED", "input.name")

    def test_unknown_execution_is_bad_input(
        self, store: str, started: Callable[..., dict[str, Any]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        started(FAILING)
        capsys.readouterr()
        assert run(["resume", "ghost", "--store", store]) == 2
        assert capsys.readouterr().err == "flowledger: execution ghost not found\n"


BAD_RUNS = [
    (["--input", '{"name": '], "Invalid value for '--input': not valid JSON"),
    (["--input", "[1, 2]"], "expected a JSON object, got list"),
    (["--input", "@/no/such/input.json"], "no such file: /no/such/input.json"),
    (["--max-concurrent", "0"], "Invalid value for '--max-concurrent'"),
    (["--actions", "/no/such/actions.py"], "no such file: /no/such/actions.py"),
    (["--actions", "no_such_module_here"], "no module named 'no_such_module_here'"),
    (["--actions", "json"], "json has no ActionRegistry named 'actions'"),
    (["--store", "sqlite://nope"], "invalid URL"),
]


@pytest.mark.parametrize(("options", "message"), BAD_RUNS)
def test_bad_input_is_one_line_and_exit_2(
    options: list[str],
    message: str,
    workflow: Workflow,
    store: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(["run", str(workflow(GREETING)), "--store", store, *options])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("flowledger: ")
    assert message in err
    assert len(err.splitlines()) == 1


def test_an_actions_module_that_fails_to_import_is_bad_input(
    tmp_path: Path, workflow: Workflow, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken_actions.py"
    broken.write_text("raise RuntimeError('no network')\n", encoding="utf-8")
    code = run(["run", str(workflow(GREETING)), "--actions", str(broken), "--store", "memory://"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot import" in err
    assert "RuntimeError: no network" in err


def test_input_that_breaks_the_schema_is_bad_input(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(EXAMPLES / "order_fulfilment.yaml"), "--store", store]
    code = run([*argv, "--input", '{"order_id": "o-1"}'])
    err = capsys.readouterr().err
    assert code == 2
    assert "input does not match its schema" in err
