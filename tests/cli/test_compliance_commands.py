"""``forget``, ``hold``, ``release``, ``purge`` and ``certificate`` on the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from flowledger.cli.main import run
from flowledger.cli.operator_commands import login_name
from flowledger.domain.canonical import canonical_json, sha256_hex

ONBOARD = {
    "id": "onboard",
    "personal_data": {"subject": "${input.customer_id}", "input": ["email", "address.street"]},
    "retention": {"days": 30},
    "steps": [
        {
            "id": "lookup",
            "action": "echo",
            "parameters": {"who": "${input.email}", "amount": "${input.amount}"},
            "personal_data": ["who"],
        },
        {
            "id": "score",
            "action": "echo",
            "parameters": {"x": "${lookup.output.amount}", "city": "${input.address.city}"},
        },
    ],
}
"""Personal data of the customer, and payloads kept for 30 days after the end."""

PLAIN = {
    "id": "plain",
    "steps": [{"id": "a", "action": "echo", "parameters": {"n": "${input.n}"}}],
}
"""No personal data, no retention."""

FAR_FUTURE = "2100-01-01T00:00:00Z"
"""A moment past every retention period here."""

Cli = Callable[..., tuple[int, Any]]
Started = Callable[..., dict[str, Any]]


def customer(customer_id: str = "cust-1", email: str = "ann@example.com") -> str:
    """The ``--input`` of an ONBOARD execution."""
    return json.dumps(
        {
            "customer_id": customer_id,
            "email": email,
            "address": {"street": "1 Main Street", "city": "Oslo"},
            "amount": 5,
        }
    )


@pytest.fixture
def onboarded(started: Started) -> str:
    """Run ONBOARD to completion; return the execution id."""
    state = started(ONBOARD, "--input", customer())
    assert state["status"] == "COMPLETED"
    return str(state["execution_id"])


def version_of(cli_json: Cli, store: str, execution_id: str) -> int:
    code, state = cli_json("show", execution_id, "--store", store)
    assert code == 0
    return int(state["version"])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_forget_reports_the_destroyed_key_and_the_executions_it_concerns(
    onboarded: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    code = run(["forget", "cust-1", "--reason", "erasure request #12", "--store", store])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].startswith("subject key subject:")
    assert lines[0].endswith(" destroyed")
    assert "cust-1" not in lines[0]  # the key id is a pseudonym, not the subject's id
    assert lines[1:] == ["erasure recorded on 1 execution(s)", f"  {onboarded}"]


def test_forgetting_again_says_the_key_was_gone_and_records_nothing(
    onboarded: str, store: str, cli_json: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = cli_json("forget", "cust-1", "--reason", "request #12", "--store", store)
    assert (code, first["key_destroyed"], first["executions"]) == (0, True, [onboarded])
    recorded = version_of(cli_json, store, onboarded)

    code = run(["forget", "cust-1", "--reason", "request #12", "--store", store])

    out = capsys.readouterr().out
    assert code == 0
    assert f"subject key {first['subject_key']} was not there to destroy (already gone)" in out
    assert "erasure recorded on 0 execution(s)" in out
    assert version_of(cli_json, store, onboarded) == recorded


def test_after_forget_personal_values_read_redacted_and_the_rest_is_intact(
    onboarded: str, started: Started, store: str, cli_json: Cli
) -> None:
    other = started(ONBOARD, "--input", customer("cust-2", "bob@example.com"))
    _, before = cli_json("show", onboarded, "--store", store)
    assert before["input"]["email"] == "ann@example.com"

    cli_json("forget", "cust-1", "--reason", "request #12", "--actor", "dpo", "--store", store)

    _, after = cli_json("show", onboarded, "--store", store)
    assert after["input"] == {
        "customer_id": "cust-1",
        "email": "[redacted]",
        "address": {"street": "[redacted]", "city": "Oslo"},
        "amount": 5,
    }
    assert after["outputs"] == {
        "lookup": {"who": "[redacted]", "amount": 5},
        "score": {"x": 5, "city": "Oslo"},
    }
    _, untouched = cli_json("show", other["execution_id"], "--store", store)
    assert untouched["input"]["email"] == "bob@example.com"
    assert untouched["outputs"]["lookup"]["who"] == "bob@example.com"


def test_histories_still_verify_after_forget(
    onboarded: str, store: str, cli_json: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_json("forget", "cust-1", "--reason", "request #12", "--store", store)

    code, report = cli_json("verify", "--store", store)

    assert code == 0
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["checked"] == version_of(cli_json, store, onboarded)


def test_forget_without_a_reason_is_one_line_and_records_nothing(
    onboarded: str, store: str, cli_json: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    before = version_of(cli_json, store, onboarded)
    capsys.readouterr()

    code = run(["forget", "cust-1", "--store", store])

    assert code == 2
    assert "Missing option '--reason'" in one_error_line(capsys)
    _, state = cli_json("show", onboarded, "--store", store)
    assert state["version"] == before
    assert state["input"]["email"] == "ann@example.com"


def test_a_held_execution_is_not_purged_until_its_hold_is_released(
    onboarded: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(["hold", onboarded, "--reason", "case 9", "--store", store]) == 0
    assert capsys.readouterr().out == f"execution {onboarded}: under legal hold\n"

    purge = ["purge", "--reason", "retention", "--now", FAR_FUTURE, "--store", store]
    assert run(purge) == 0
    assert capsys.readouterr().out == "purged 0 execution(s)\n"
    assert run(["certificate", onboarded, "--store", store]) == 1
    capsys.readouterr()

    assert run(["release", onboarded, "--reason", "case closed", "--store", store]) == 0
    assert capsys.readouterr().out == f"execution {onboarded}: no longer under legal hold\n"
    assert run(purge) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "purged 1 execution(s)"
    assert out[1].startswith(f"  {onboarded} (ended ")
    assert run(["certificate", onboarded, "--store", store]) == 0


def test_a_dry_run_lists_the_certificates_and_changes_nothing(
    onboarded: str, store: str, cli_json: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    before = version_of(cli_json, store, onboarded)

    code, listed = cli_json(
        "purge", "--reason", "retention", "--dry-run", "--now", FAR_FUTURE, "--store", store
    )

    assert code == 0
    assert listed["dry_run"] is True
    assert [c["execution_id"] for c in listed["certificates"]] == [onboarded]
    capsys.readouterr()
    assert run(["certificate", onboarded, "--store", store]) == 1
    assert capsys.readouterr().err == f"execution {onboarded} was not purged\n"
    _, state = cli_json("show", onboarded, "--store", store)
    assert state["version"] == before
    assert state["input"]["email"] == "ann@example.com"


def test_the_certificate_names_the_purged_history_and_its_skeleton(
    onboarded: str, store: str, cli_json: Cli
) -> None:
    _, history = cli_json("history", onboarded, "--store", store)
    code, purged = cli_json(
        "purge", "--reason", "retention rule R-3", "--now", FAR_FUTURE, "--store", store
    )
    assert (code, purged["dry_run"], len(purged["certificates"])) == (0, False, 1)

    code, certificate = cli_json("certificate", onboarded, "--store", store)

    assert code == 0
    assert certificate == purged["certificates"][0]
    assert certificate["format"] == "flowledger.deletion-certificate/1"
    assert certificate["execution_id"] == onboarded
    assert certificate["workflow_id"] == "onboard"
    assert certificate["events"] == len(history)
    assert certificate["chain_head"] == history[-1]["hash"]
    assert certificate["judged_as_of"] == "2100-01-01T00:00:00+00:00"
    assert certificate["purged_at"] < "2100"  # recorded when it happened, not as judged
    assert certificate["retention_days"] == 30
    assert (certificate["actor"], certificate["reason"]) == (login_name(), "retention rule R-3")
    skeleton = [
        {key: entry[key] for key in ("version", "type", "timestamp", "hash", "prev_hash")}
        for entry in history
    ]
    assert certificate["skeleton_sha256"] == sha256_hex(canonical_json(skeleton))
    _, after = cli_json("show", onboarded, "--store", store)
    assert after["input"] == "[redacted]"
    assert after["outputs"] == {"lookup": "[redacted]", "score": "[redacted]"}
    code, report = cli_json("verify", onboarded, "--store", store)
    assert (code, report["ok"]) == (0, True)


def test_holding_twice_is_refused_in_one_line(
    onboarded: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["hold", onboarded, "--reason", "case 9", "--store", store]) == 0
    capsys.readouterr()

    code = run(["hold", onboarded, "--reason", "case 10", "--store", store])

    assert code == 2
    assert one_error_line(capsys) == (
        f"flowledger: cannot hold: execution {onboarded}: it is under legal hold already\n"
    )


def test_releasing_without_a_hold_is_refused_in_one_line(
    onboarded: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    code = run(["release", onboarded, "--reason", "case closed", "--store", store])

    assert code == 2
    assert one_error_line(capsys) == (
        f"flowledger: cannot release: execution {onboarded} is not under legal hold\n"
    )


def test_an_execution_whose_workflow_declares_no_retention_is_never_purged(
    started: Started, store: str, cli_json: Cli
) -> None:
    plain = started(PLAIN, "--input", '{"n": 1}')
    assert plain["status"] == "COMPLETED"

    for dry_run in (("--dry-run",), ()):
        code, listed = cli_json(
            "purge", "--reason", "retention", "--now", FAR_FUTURE, *dry_run, "--store", store
        )
        assert (code, listed["certificates"]) == (0, [])

    code, state = cli_json("show", plain["execution_id"], "--store", store)
    assert state["outputs"] == {"a": {"n": 1}}
    assert state["version"] == plain["version"]
