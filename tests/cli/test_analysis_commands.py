"""``diff``, ``import``, ``replay`` and ``metrics``, in process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowledger.cli.main import run
from tests.cli.conftest import FAILING, GREETING

Started = Callable[..., dict[str, Any]]
CliJson = Callable[..., tuple[int, Any]]
NAMED = ("--input", '{"name": "al"}')


@pytest.fixture
def two(started: Started) -> tuple[str, str]:
    """Two completed greetings, for al and bo."""
    first = started(GREETING, *NAMED)
    second = started(GREETING, "--input", '{"name": "bo"}')
    return first["execution_id"], second["execution_id"]


class TestDiff:
    def test_two_moments_of_one_execution(
        self, two: tuple[str, str], store: str, cli_json: CliJson
    ) -> None:
        code, found = cli_json("diff", two[0], "--from", "2", "--to", "3", "--store", store)
        assert code == 0
        (greet,) = (step for step in found["step_changes"] if step["step_id"] == "greet")
        status = next(change for change in greet["changes"] if change["field"] == "status")
        assert (status["before"], status["after"]) == ("RUNNING", "COMPLETED")

    def test_from_the_first_event_to_now_by_default(
        self, two: tuple[str, str], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["diff", two[0], "--store", store]) == 0
        out = capsys.readouterr().out
        assert "execution status: RUNNING -> COMPLETED" in out

    def test_a_moment_as_a_time(self, two: tuple[str, str], store: str, cli_json: CliJson) -> None:
        _, state = cli_json("show", two[0], "--store", store)
        code, found = cli_json("diff", two[0], "--from", state["created_at"], "--store", store)
        assert code == 0
        assert any(change["field"] == "status" for change in found["changes"])

    def test_two_executions_step_by_step(
        self, two: tuple[str, str], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        assert run(["diff", *two, "--store", store]) == 0
        out = capsys.readouterr().out
        assert 'step shout: output: {"text":"hello al!"} -> {"text":"hello bo!"}' in out

    def test_other_and_moments_together_are_bad_usage(
        self, two: tuple[str, str], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(["diff", *two, "--from", "1", "--store", store]) == 2
        assert capsys.readouterr().err.strip() == (
            "flowledger: give OTHER or --from/--to, not both"
        )


class TestImport:
    @pytest.fixture
    def bundle(self, two: tuple[str, str], store: str, tmp_path: Path) -> Path:
        path = tmp_path / "bundle.json"
        assert run(["export", two[0], "--output", str(path), "--store", store]) == 0
        return path

    def test_into_a_new_store_then_again(
        self, bundle: Path, tmp_path: Path, cli_json: CliJson
    ) -> None:
        other = f"sqlite:///{tmp_path}/other.db"
        code, imported = cli_json("import", str(bundle), "--store", other)
        again, _ = cli_json("import", str(bundle), "--store", other)
        verified, report = cli_json("verify", "--store", other)
        assert (code, again, verified) == (0, 0, 0)
        assert imported["events"] == report["checked"]

    def test_check_only_verifies_and_stores_nothing(
        self, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = tmp_path / "unused.db"
        capsys.readouterr()
        assert run(["import", str(bundle), "--check", "--store", f"sqlite:///{other}"]) == 0
        assert "verified" in capsys.readouterr().out
        assert not other.exists()

    def test_a_tampered_bundle_fails_the_check_and_is_not_stored(
        self, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        document = json.loads(bundle.read_text())
        document["events"][2]["data"]["output"] = {"greeting": "forged"}
        bundle.write_text(json.dumps(document))
        other = tmp_path / "other.db"
        capsys.readouterr()
        assert run(["import", str(bundle), "--store", f"sqlite:///{other}"]) == 1
        out = capsys.readouterr().out
        assert "NOT verified" in out
        assert "version 3: " in out
        assert not other.exists()

    def test_a_missing_file_is_bad_input(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert run(["import", "no-such-bundle.json"]) == 2
        assert "no such file" in capsys.readouterr().err


class TestReplay:
    def test_a_changed_definition_is_replayed_without_running_actions(
        self, two: tuple[str, str], store: str, workflow: Callable[..., Path], cli_json: CliJson
    ) -> None:
        changed = json.loads(json.dumps(GREETING))
        changed["steps"][1]["parameters"]["text"] = "${greet.output.greeting}?"
        path = workflow(changed)
        code, report = cli_json(
            "replay", two[0], str(path), "--stubs", '{"shout": {"text": "stub"}}', "--store", store
        )
        assert code == 0
        assert report["first_divergence"] == "shout"
        assert report["steps"]["greet"]["produced_by"] == "served"
        assert report["steps"]["shout"]["what_if_output"] == {"text": "stub"}

    def test_an_unchanged_definition_matches_the_record(
        self,
        two: tuple[str, str],
        store: str,
        workflow: Callable[..., Path],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = workflow(GREETING)
        capsys.readouterr()
        assert run(["replay", two[0], str(path), "--store", store]) == 0
        assert "first divergence: none" in capsys.readouterr().out

    def test_a_missing_definition_is_bad_input(
        self, two: tuple[str, str], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(["replay", two[0], "missing.yaml", "--store", store]) == 2
        assert "no such file: missing.yaml" in capsys.readouterr().err


class TestMetrics:
    def test_counts_per_workflow_and_action(
        self, started: Started, store: str, cli_json: CliJson
    ) -> None:
        started(GREETING, *NAMED)
        started(FAILING)
        code, rows = cli_json("metrics", "--store", store)
        by_action = {(row["workflow_id"], row["action"]): row for row in rows}
        assert code == 0
        assert by_action["greeting", "greet"]["completed"] == 1
        assert by_action["failing", "explode"]["failure_rate"] == 1.0

    def test_a_table_filtered_by_workflow(
        self, started: Started, store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        started(GREETING, *NAMED)
        started(FAILING)
        capsys.readouterr()
        assert run(["metrics", "--workflow", "failing", "--store", store]) == 0
        out = capsys.readouterr().out
        assert "explode" in out
        assert "greet " not in out
        assert "100.0%" in out


def test_a_warning_is_one_prefixed_line_on_stderr(
    started: Started, store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started(GREETING, *NAMED)
    assert run(["list", "--store", store]) == 0  # builds the read models beside the store
    (tmp_path / "cli.db").unlink()  # the store is replaced; its old read models stay
    started(GREETING, *NAMED)
    capsys.readouterr()

    assert run(["list", "--store", store]) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith("flowledger: warning: read models ")
