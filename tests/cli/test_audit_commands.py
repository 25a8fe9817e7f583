"""``history``, ``verify``, ``export`` and ``graph --execution``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from flowledger.cli.main import run
from flowledger.domain.execution import execution_uuid
from tests.cli.conftest import FAILING, GREETING

Started = Callable[..., dict[str, Any]]
CliJson = Callable[..., tuple[int, Any]]


def delete_event(store: str, execution_id: str, version: int) -> None:
    """Remove one stored event from the SQLite file, as tampering would."""
    key = (execution_uuid(execution_id).hex, version)
    with closing(sqlite3.connect(store.removeprefix("sqlite:///"))) as db, db:
        db.execute("DELETE FROM stored_events WHERE originator_id=? AND originator_version=?", key)


@pytest.fixture
def failed(started: Started) -> dict[str, Any]:
    return started(FAILING)


class TestHistory:
    def test_table_of_every_event_with_a_summary(
        self, failed: dict[str, Any], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["history", failed["execution_id"], "--store", store]) == 0
        rows = capsys.readouterr().out.splitlines()
        assert rows[0].split() == ["version", "time", "event", "step", "summary"]
        assert [row.split()[0] for row in rows[1:]] == [
            str(n) for n in range(1, failed["version"] + 1)
        ]
        assert rows[1].split()[2:4] == ["ExecutionStarted", "execution"]
        boom = next(row for row in rows if "StepFailed" in row)
        assert boom.split()[3:8] == ["boom", "step", "boom", "attempt", "1"]
        assert boom.endswith("NonRetryableError: it broke (not retryable)")

    def test_json_entries(self, failed: dict[str, Any], store: str, cli_json: CliJson) -> None:
        code, entries = cli_json("history", failed["execution_id"], "--store", store)
        assert code == 0
        assert entries[0]["type"] == "ExecutionStarted"
        assert entries[0]["prev_hash"] != entries[0]["hash"] == entries[1]["prev_hash"]
        assert entries[-1]["type"] == "ExecutionFailed"
        assert (
            entries[-1]["summary"] == "execution failed at step boom: NonRetryableError: it broke"
        )
        assert entries[-1]["timestamp"].endswith("+00:00")

    def test_unknown_id(self, failed: dict[str, Any], store: str) -> None:
        assert run(["history", "nope", "--store", store]) == 2


class TestVerify:
    def test_every_history_verifies(
        self,
        failed: dict[str, Any],
        started: Started,
        store: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        started(GREETING)
        capsys.readouterr()
        assert run(["verify", "--store", store]) == 0
        assert capsys.readouterr().out.startswith("verified: 2 execution(s)")

    def test_a_tampered_history_fails_the_check(
        self,
        failed: dict[str, Any],
        started: Started,
        store: str,
        cli_json: CliJson,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        execution_id = failed["execution_id"]
        started(GREETING)
        delete_event(store, execution_id, 3)
        capsys.readouterr()
        assert run(["verify", "--store", store]) == 1
        out = capsys.readouterr().out
        assert out.startswith("NOT verified: 2 execution(s)")
        assert f"  {execution_id} at version 3: " in out
        code, report = cli_json("verify", execution_id, "--store", store)
        assert (code, report["ok"], report["executions"]) == (1, False, 1)
        assert report["problems"][0]["version"] == 3

    def test_unknown_id(self, failed: dict[str, Any], store: str) -> None:
        assert run(["verify", "nope", "--store", store]) == 2


class TestExport:
    def test_bundle_on_standard_output(
        self, failed: dict[str, Any], store: str, cli_json: CliJson
    ) -> None:
        code, bundle = cli_json("export", failed["execution_id"], "--store", store)
        assert code == 0
        assert bundle["format"] == "flowledger.export/1"
        assert bundle["definition"]["id"] == "failing"
        assert len(bundle["events"]) == failed["version"]

    def test_bundle_to_a_file(
        self, failed: dict[str, Any], store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        target = tmp_path / "bundle.json"
        capsys.readouterr()
        assert (
            run(["export", failed["execution_id"], "--output", str(target), "--store", store]) == 0
        )
        assert capsys.readouterr().out.startswith(f"exported {failed['version']} event(s)")
        bundle = json.loads(target.read_text(encoding="utf-8"))
        assert bundle["execution_id"] == failed["execution_id"]

    def test_json_summary_of_a_file_export(
        self, failed: dict[str, Any], store: str, tmp_path: Path, cli_json: CliJson
    ) -> None:
        target = tmp_path / "bundle.json"
        code, summary = cli_json(
            "export", failed["execution_id"], "--output", str(target), "--store", store
        )
        assert code == 0
        assert summary["output"] == str(target)
        assert summary["chain_head"] == json.loads(target.read_text(encoding="utf-8"))["chain_head"]

    def test_unwritable_output_is_one_line(
        self, failed: dict[str, Any], store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        target = tmp_path / "missing" / "bundle.json"
        capsys.readouterr()
        assert (
            run(["export", failed["execution_id"], "--output", str(target), "--store", store]) == 2
        )
        err = capsys.readouterr().err
        assert err.startswith("flowledger: No such file or directory")
        assert len(err.splitlines()) == 1


class TestGraphOfAnExecution:
    def test_steps_coloured_by_status(
        self,
        failed: dict[str, Any],
        store: str,
        workflow: Callable[..., Path],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        capsys.readouterr()
        path = workflow(FAILING)
        assert (
            run(["graph", str(path), "--execution", failed["execution_id"], "--store", store]) == 0
        )
        out = capsys.readouterr().out
        assert "    classDef completed fill:#d1e7dd" in out
        assert "    class s0 completed\n" in out
        assert "    class s1 failed\n" in out

    def test_the_recorded_definition_is_drawn_without_a_file(
        self, failed: dict[str, Any], store: str, cli_json: CliJson
    ) -> None:
        code, payload = cli_json("graph", "--execution", failed["execution_id"], "--store", store)
        assert code == 0
        assert payload["statuses"] == {"first": "COMPLETED", "boom": "FAILED"}
        assert '    s1["boom<br/>explode"]' in payload["mermaid"]
        assert "class s1 failed" in payload["mermaid"]

    def test_nothing_to_draw_is_bad_usage(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert run(["graph"]) == 2
        assert "give a definition FILE, --execution ID, or both" in capsys.readouterr().err

    def test_unknown_execution(self, failed: dict[str, Any], store: str) -> None:
        assert run(["graph", "--execution", "nope", "--store", store]) == 2
