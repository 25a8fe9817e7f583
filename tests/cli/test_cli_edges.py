"""The command line's edges: error messages, event texts, action modules, help."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from eventsourcing.persistence import OperationalError

from flowledger.cli import main as cli_main
from flowledger.cli.event_text import error_text, format_duration, progress_line
from flowledger.cli.main import message_of, run
from flowledger.cli.options import load_actions
from flowledger.engine.notifications import Notification
from flowledger.errors import ExecutionNotFoundError

MOMENT = datetime(2025, 1, 31, 12, 0, 1, 234000, tzinfo=UTC)


class TestMessages:
    @pytest.mark.parametrize(
        ("error", "message"),
        [
            (click.Abort(), "aborted"),
            (ExecutionNotFoundError("x"), "execution x not found"),
            (
                OperationalError("database is locked"),
                "store error: OperationalError: database is locked",
            ),
            (sqlite3.DatabaseError("file is not a database"), "store error: DatabaseError: file"),
            (PermissionError(13, "Permission denied", "/out.json"), "Permission denied: /out.json"),
            (OSError("disk on fire"), "OSError: disk on fire"),
            (KeyError("surprise"), "unexpected error: KeyError: 'surprise'"),
        ],
    )
    def test_one_line_per_error(self, error: Exception, message: str) -> None:
        assert message_of(error).startswith(message)

    def test_an_unexpected_error_in_a_command_is_one_line(
        self,
        monkeypatch: pytest.MonkeyPatch,
        started: object,
        capsys: pytest.CaptureFixture[str],
        store: str,
    ) -> None:
        from tests.cli.conftest import FAILING

        started(FAILING)  # type: ignore[operator]

        def broken(*args: object, **kwargs: object) -> None:
            raise ZeroDivisionError("division by zero\nsecond line")

        monkeypatch.setattr("flowledger.engine.ledger.Ledger.list", broken)
        capsys.readouterr()
        assert run(["list", "--store", store]) == 2
        err = capsys.readouterr().err
        assert (
            err == "flowledger: unexpected error: ZeroDivisionError: division by zero second line\n"
        )

    def test_main_exits_with_the_code(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setattr(sys, "argv", ["flowledger", "--version"])
        with pytest.raises(SystemExit) as raised:
            cli_main.main()
        assert raised.value.code == 0
        assert "flowledger, version" in capsys.readouterr().out

    def test_help_in_process_lists_commands_in_order(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(["--help"]) == 0
        out = capsys.readouterr().out
        assert out.index("  run ") < out.index("  list ") < out.index("  export ")


class TestEventTexts:
    def test_durations(self) -> None:
        assert format_duration(None) == ""
        assert format_duration(2500) == "2.50 s"

    def test_errors(self) -> None:
        assert error_text(None) == ""
        assert error_text({"type": "ValueError", "message": "bad"}) == "ValueError: bad"

    def test_a_progress_line_is_the_time_and_the_timeline_text(self) -> None:
        data = {"step_id": "slow", "attempt": 1, "timeout": 2.0}
        note = Notification("e", "STEP_FAILED", "slow", data, 4, "StepTimedOut", MOMENT)
        assert progress_line(note) == "12:00:01.234  step slow attempt 1 timed out after 2 s"


class TestActionModules:
    def test_a_dotted_name_is_found_from_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "cwd_actions.py").write_text(
            "from flowledger import ActionRegistry\nactions = ActionRegistry()\n", encoding="utf-8"
        )
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
        monkeypatch.delitem(sys.modules, "cwd_actions", raising=False)
        assert len(load_actions("cwd_actions")) == 0

    def test_a_missing_dependency_is_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "needy_actions.py").write_text("import no_such_dependency\n", encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", list(sys.path))
        with pytest.raises(
            click.BadParameter, match="ModuleNotFoundError: No module named 'no_such_dependency'"
        ):
            load_actions("needy_actions")

    def test_a_file_that_is_not_python(self, tmp_path: Path) -> None:
        path = tmp_path / "actions.txt"
        path.write_text("actions = 1\n", encoding="utf-8")
        with pytest.raises(click.BadParameter, match="is not a Python module"):
            load_actions(str(path))
