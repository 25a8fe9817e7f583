"""The ``validate`` and ``graph`` commands, in process and as the installed command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowledger.cli.main import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FLOWLEDGER = Path(sys.executable).with_name("flowledger")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class TestValidate:
    def test_valid_example_lists_steps_in_order(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = run(["validate", str(EXAMPLES / "order_fulfilment.yaml")])
        out = capsys.readouterr().out
        assert code == 0
        assert "valid workflow 'order-fulfilment'" in out
        order = [line.split()[0] for line in out.splitlines()[2:]]
        assert order.index("charge_card") > order.index("validate_order")
        assert order.index("ship") > order.index("charge_card")

    def test_json_output_is_machine_readable(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = run(["validate", str(EXAMPLES / "approval_graph.json"), "--json"])
        payload = json.loads(capsys.readouterr().out)
        assert code == 0
        assert payload["valid"] is True
        assert payload["steps"][0] == {"id": "submitted", "action": None, "after": []}
        assert len(payload["hash"]) == 64

    def test_every_problem_is_listed_and_exit_code_is_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(
            tmp_path,
            "bad.json",
            json.dumps(
                {
                    "id": "w",
                    "steps": [
                        {"id": "a", "action": "noop", "timeout": -1},
                        {"id": "a", "action": "noop", "depends_on": ["ghost"]},
                    ],
                }
            ),
        )
        code = run(["validate", str(path), "--json"])
        problems = json.loads(capsys.readouterr().out)["problems"]
        assert code == 1
        assert len(problems) >= 3
        assert all(problem["path"].startswith("$") for problem in problems)

    def test_problems_are_listed_for_people_too(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "bad.json", json.dumps({"id": "w", "steps": [{"id": "a"}]}))
        code = run(["validate", str(path)])
        out = capsys.readouterr().out
        assert code == 1
        assert out.startswith(f"{path}: 1 problem(s)\n  $.steps[0]")

    def test_missing_file_is_bad_input(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = run(["validate", str(tmp_path / "nope.yaml")])
        err = capsys.readouterr().err
        assert code == 2
        assert "no such file" in err
        assert len(err.strip().splitlines()) == 1

    def test_unknown_command_is_bad_usage(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert run(["frobnicate"]) == 2
        assert "No such command" in capsys.readouterr().err


class TestGraph:
    def test_mermaid_has_a_node_per_step_and_labelled_conditions(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = run(["graph", str(EXAMPLES / "approval_graph.json")])
        out = capsys.readouterr().out
        assert code == 0
        assert out.startswith("flowchart TD\n")
        assert out.count("<br/>") == 4
        assert '-->|"input.amount <= 100"|' in out

    def test_truncated_json_is_one_line_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "cut.json", '{"id": "w", "steps": [')
        code = run(["graph", str(path)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("flowledger: invalid workflow definition")
        assert len(err.strip().splitlines()) == 1


class TestInstalledCommand:
    def test_help_lists_commands(self) -> None:
        result = subprocess.run(
            [str(FLOWLEDGER), "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0
        assert "validate" in result.stdout
        assert "graph" in result.stdout

    def test_bad_input_never_prints_a_traceback(self, tmp_path: Path) -> None:
        path = write(tmp_path, "bad.yaml", "id: [unclosed\n")
        result = subprocess.run(
            [str(FLOWLEDGER), "graph", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
