"""Verify and export: the hash chains of stored histories, tampered with in the file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flowledger.domain.chain import link_of
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.engine.audit import EXPORT_FORMAT, VerifyProblem, VerifyReport
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.errors import CorruptRecordError
from tests.domain.factories import at, chain_definition, error
from tests.engine.test_ledger import NASTY, run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """A SQLite file holding three finished executions (6 events each)."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    with LedgerApplication(url) as app:
        app.save(run("ex-1"), run("ex-2", end="fail"), run("ex-3"))
    yield url


def tamper(url: str, execution_id: str, version: int, change: Any) -> None:
    """Apply ``change`` to one stored row, directly in the SQLite file.

    ``change`` takes the row's state bytes and returns new bytes, or None to delete
    the row.
    """
    path = url.removeprefix("sqlite:///")
    key = (execution_uuid(execution_id).hex, version)
    with closing(sqlite3.connect(path)) as db, db:
        (state,) = db.execute(
            "SELECT state FROM stored_events WHERE originator_id=? AND originator_version=?", key
        ).fetchone()
        changed = change(state)
        if changed is None:
            db.execute(
                "DELETE FROM stored_events WHERE originator_id=? AND originator_version=?", key
            )
        else:
            db.execute(
                "UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=?",
                (changed, *key),
            )


def edit_json(edit: Any) -> Any:
    def change(state: bytes) -> bytes:
        document = json.loads(state)
        edit(document)
        return json.dumps(document).encode()

    return change


def verified(url: str, execution_id: str | None = None) -> VerifyReport:
    with Ledger(url) as ledger:
        return ledger.verify(execution_id)


def only_problem(report: VerifyReport) -> VerifyProblem:
    assert not report.ok
    assert len(report.problems) == 1
    return report.problems[0]


def test_untouched_histories_verify(store: str) -> None:
    report = verified(store)
    assert report.ok
    assert report.checked == 18
    assert report.executions == 3
    assert report.problems == ()
    one = verified(store, "ex-2")
    assert (one.ok, one.checked, one.executions) == (True, 6, 1)


def test_many_executions_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/many.db"
    with LedgerApplication(url) as app:
        app.save(*(run(f"ex-{index}", start=index) for index in range(60)))
    report = verified(url)
    assert report.ok
    assert (report.checked, report.executions) == (360, 60)


def test_an_edited_output_is_detected(store: str) -> None:
    tamper(store, "ex-2", 3, edit_json(lambda doc: doc.update(output='{"done":"z"}')))
    problem = only_problem(verified(store))
    assert (problem.execution_id, problem.version) == ("ex-2", 3)
    assert "does not match the recomputed" in problem.reason
    assert verified(store, "ex-1").ok
    report = verified(store, "ex-2")
    assert report.checked == 3


def test_an_edit_that_recomputes_its_hash_breaks_the_next_link(store: str) -> None:
    forged_output = '{"done":"forged"}'
    with LedgerApplication(store) as app:
        record = app.stored_records(execution_uuid("ex-1"))[2]
        link = link_of(app.decode(record))
    forged_hash = replace(link, data={**link.data, "output": forged_output}).recompute()

    def forge(doc: dict[str, Any]) -> None:
        doc["output"] = forged_output
        doc["hash"] = forged_hash

    tamper(store, "ex-1", 3, edit_json(forge))
    problem = only_problem(verified(store, "ex-1"))
    assert problem.version == 4
    assert f"is not the previous hash {forged_hash}" in problem.reason
    with Ledger(store) as ledger:
        assert ledger.get("ex-1").outputs["a"] == {"done": "forged"}  # only verify can tell


def test_an_undecodable_row_is_a_problem_not_a_crash(store: str) -> None:
    tamper(store, "ex-3", 4, lambda state: b"\x00\xffnot json" + state)
    report = verified(store)
    problem = only_problem(report)
    assert (problem.execution_id, problem.version) == ("ex-3", 4)
    assert "cannot be read" in problem.reason
    assert report.checked == 6 + 6 + 4
    with Ledger(store) as ledger, pytest.raises(CorruptRecordError) as raised:
        ledger.history("ex-3")
    assert raised.value.version == 4
    with Ledger(store) as ledger, pytest.raises(CorruptRecordError):
        ledger.get("ex-3")


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda doc: doc.pop("hash"), "lacks hash"),
        (lambda doc: doc.update(timestamp="2024-05-01T12:00:03+00:00"), "timestamp"),
        (lambda doc: doc.update(prev_hash=7), "prev_hash"),
    ],
)
def test_a_malformed_row_is_a_problem(store: str, edit: Any, reason: str) -> None:
    tamper(store, "ex-1", 4, edit_json(edit))
    problem = only_problem(verified(store))
    assert (problem.execution_id, problem.version) == ("ex-1", 4)
    assert reason in problem.reason


@pytest.mark.parametrize(
    ("topic", "version"),
    [
        ("eventsourcing.domain:Snapshot", 2),
        ("builtins:dict", 3),
        ("flowledger.domain.execution:Execution", 4),
        ("nowhere.module:Nothing", 5),
    ],
)
def test_a_row_whose_topic_was_changed_is_a_problem(store: str, topic: str, version: int) -> None:
    path = store.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE stored_events SET topic=? WHERE originator_id=? AND originator_version=?",
            (topic, execution_uuid("ex-1").hex, version),
        )
    problem = only_problem(verified(store))
    assert problem.version == version
    assert "cannot be read" in problem.reason


def test_a_deleted_row_leaves_a_gap(store: str) -> None:
    tamper(store, "ex-1", 3, lambda state: None)
    problem = only_problem(verified(store))
    assert (problem.execution_id, problem.version) == ("ex-1", 3)
    assert "expected version 3, found 4" in problem.reason
    with Ledger(store) as ledger, pytest.raises(CorruptRecordError):
        ledger.get("ex-1", at=at(10))


def test_a_deleted_first_row_is_still_found(store: str) -> None:
    tamper(store, "ex-2", 1, lambda state: None)
    problem = only_problem(verified(store))
    assert problem.execution_id == str(execution_uuid("ex-2"))
    assert problem.version == 1
    assert verified(store, "ex-2").problems[0]["version"] == 1


def test_a_damaged_first_row_is_reported_by_aggregate_id(store: str) -> None:
    tamper(store, "ex-3", 1, lambda state: b"garbage")
    problem = only_problem(verified(store))
    assert problem.execution_id == str(execution_uuid("ex-3"))
    assert (problem.version, problem["version"]) == (1, 1)


def test_the_report_is_json_ready(store: str) -> None:
    tamper(store, "ex-1", 2, lambda state: None)
    report = verified(store)
    document = json.loads(json.dumps(report.to_dict()))
    assert document["ok"] is False
    assert document["checked"] == report.checked
    assert document["problems"][0] == {
        "execution_id": "ex-1",
        "version": 2,
        "reason": report.problems[0].reason,
    }


def test_export_is_json_and_ends_at_the_chain_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/export.db"
    execution = run("ex-1")
    with LedgerApplication(url) as app:
        app.save(execution, run("ex-2"))
    with Ledger(url) as ledger:
        document = ledger.export("ex-1")
        history = ledger.history("ex-1")
    assert json.loads(json.dumps(document)) == document
    assert set(document) == {
        "format",
        "execution_id",
        "workflow_id",
        "definition",
        "definition_hash",
        "events",
        "chain_head",
    }
    assert document["format"] == EXPORT_FORMAT
    assert document["execution_id"] == "ex-1"
    assert document["workflow_id"] == "wf"
    assert document["definition"] == execution.definition_dict()
    assert document["definition_hash"] == execution.state().definition_hash
    assert document["chain_head"] == execution.chain_head
    assert [event["version"] for event in document["events"]] == list(range(1, 7))
    first = document["events"][0]
    assert first["type"] == "ExecutionStarted"
    assert first["timestamp"] == at(0).isoformat()
    assert first["data"]["input"] == {"n": 1}
    assert first["prev_hash"] == "0" * 64
    assert [event["hash"] for event in document["events"]] == [entry.hash for entry in history]
    assert document["events"][1]["step_id"] == "a"


def test_export_turns_every_datetime_into_text() -> None:
    execution = Execution.start("ex-1", chain_definition("a"), NASTY, at(0))
    execution.start_step("a", {"list": [NASTY]}, at(1))
    execution.fail_step("a", error(), True, 1.0, at(2))
    execution.schedule_retry("a", at(30), at(3))
    app = LedgerApplication("memory://")
    app.save(execution)
    document = Ledger(application=app).export("ex-1")
    assert json.loads(json.dumps(document)) == document
    assert document["events"][0]["data"]["input"] == NASTY
    assert document["events"][1]["data"]["parameters"] == {"list": [NASTY]}
    assert document["events"][3]["data"]["not_before"] == at(30).isoformat()


def test_export_of_a_history_without_its_first_event_is_refused(store: str) -> None:
    tamper(store, "ex-1", 1, lambda state: None)
    with Ledger(store) as ledger, pytest.raises(CorruptRecordError, match="ExecutionStarted"):
        ledger.export("ex-1")
