"""``retry`` and ``skip``, and who and why the operator commands record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger.cli.main import run
from flowledger.cli.operator_commands import login_name
from tests.cli.cli_actions import FIXED
from tests.cli.conftest import ACTIONS_MODULE

FRAGILE = {
    "id": "fragile",
    "steps": [
        {"id": "first", "action": "noop"},
        {"id": "repair", "action": "fragile"},
        {"id": "report", "action": "echo", "parameters": {"repaired": "${repair.output}"}},
    ],
}

GUARDED = {
    "id": "guarded",
    "steps": [{"id": "charge", "action": "fragile", "non_skippable": True}],
}


@pytest.fixture
def failed(
    workflow: Callable[[dict[str, Any]], Path],
    store: str,
    cli_json: Callable[..., tuple[int, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[dict[str, Any]], str]:
    """Run a definition to its failure; return the execution id."""
    monkeypatch.delenv(FIXED, raising=False)

    def fail(definition: dict[str, Any]) -> str:
        code, state = cli_json(
            "run", str(workflow(definition)), "--store", store, "--actions", ACTIONS_MODULE
        )
        assert (code, state["status"]) == (1, "FAILED")
        return str(state["execution_id"])

    return fail


def interventions(store: str, execution_id: str, capsys: pytest.CaptureFixture[str]) -> list[Any]:
    capsys.readouterr()
    assert run(["history", execution_id, "--store", store, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    return [
        (entry["type"], entry["data"].get("actor"), entry["data"].get("reason"))
        for entry in entries
        if entry["type"] in {"ExecutionRetried", "StepSkippedByOperator", "CancelRequested"}
    ]


def test_retry_reruns_the_failure_once_repaired_and_records_who_and_why(
    failed: Callable[[dict[str, Any]], str],
    store: str,
    cli_json: Callable[..., tuple[int, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    execution_id = failed(FRAGILE)
    monkeypatch.setenv(FIXED, "1")

    code, state = cli_json(
        "retry",
        execution_id,
        "--reason",
        "disk replaced",
        "--store",
        store,
        "--actions",
        ACTIONS_MODULE,
    )

    assert (code, state["status"]) == (0, "COMPLETED")
    assert state["outputs"]["report"] == {"repaired": {"fixed": True}}
    assert interventions(store, execution_id, capsys) == [
        ("ExecutionRetried", login_name(), "disk replaced")
    ]


def test_retry_and_skip_need_a_reason(
    failed: Callable[[dict[str, Any]], str], store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    execution_id = failed(FRAGILE)
    capsys.readouterr()
    for argv in (["retry", execution_id], ["skip", execution_id, "repair"]):
        assert run([*argv, "--store", store]) == 2
        err = capsys.readouterr().err
        assert "Missing option '--reason'" in err
        assert len(err.strip().splitlines()) == 1


def test_skip_lets_the_rest_run_with_the_output_given(
    failed: Callable[[dict[str, Any]], str],
    store: str,
    cli_json: Callable[..., tuple[int, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    execution_id = failed(FRAGILE)

    code, state = cli_json(
        "skip", execution_id, "repair", "--reason", "repaired by hand", "--actor", "ops-ann",
        "--output", '{"fixed": "by hand"}', "--store", store, "--actions", ACTIONS_MODULE,
    )  # fmt: skip

    assert (code, state["status"]) == (0, "COMPLETED")
    assert state["steps"]["repair"]["status"] == "SKIPPED"
    assert state["outputs"]["report"] == {"repaired": {"fixed": "by hand"}}
    assert interventions(store, execution_id, capsys) == [
        ("StepSkippedByOperator", "ops-ann", "repaired by hand")
    ]


def test_a_refused_skip_is_one_line_and_records_nothing(
    failed: Callable[[dict[str, Any]], str],
    store: str,
    cli_json: Callable[..., tuple[int, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    execution_id = failed(GUARDED)
    _, before = cli_json("show", execution_id, "--store", store)
    capsys.readouterr()

    code = run(["skip", execution_id, "charge", "--reason", "hurry", "--store", store])

    err = capsys.readouterr().err
    assert code == 2
    assert err == "flowledger: cannot skip: step 'charge' is non_skippable or a trigger\n"
    _, after = cli_json("show", execution_id, "--store", store)
    assert after["version"] == before["version"]


def test_cancel_records_the_login_name_when_no_actor_is_given(
    workflow: Callable[[dict[str, Any]], Path],
    store: str,
    cli_json: Callable[..., tuple[int, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    definition = {
        "id": "waits",
        "steps": [{"id": "a", "action": "echo", "parameters": {"n": "${input.n}"}}],
    }
    _, paused = cli_json("run", str(workflow(definition)), "--store", store)
    assert paused["status"] == "PAUSED"

    code, state = cli_json(
        "cancel", paused["execution_id"], "--reason", "not needed", "--store", store
    )

    assert (code, state["status"]) == (0, "CANCELLED")
    assert interventions(store, paused["execution_id"], capsys) == [
        ("CancelRequested", login_name(), "not needed")
    ]
