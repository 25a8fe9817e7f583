"""Crypto-shredding: personal data sealed per data subject, erased by destroying its key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowledger import (
    ExecutionStatus,
    Ledger,
    MissingInputError,
    SubjectForgottenError,
    WorkflowEngine,
)
from flowledger.domain.sealing import REDACTED, is_sealed
from flowledger.engine.bundles import verify_bundle
from flowledger.errors import OperatorActionError
from tests.unit.conftest import WAIT, Gate

ONBOARDING: dict[str, Any] = {
    "id": "onboarding",
    "personal_data": {"subject": "${input.customer_id}", "input": ["email", "address.street"]},
    "steps": [
        {
            "id": "lookup",
            "action": "echo",
            "parameters": {"name": "${input.name}", "street": "${input.address.street}"},
            "personal_data": ["street"],
        },
        {
            "id": "mail",
            "action": "echo",
            "parameters": {"to": "${input.email}", "ref": "R-1"},
            "personal_data": ["to"],
        },
        {
            "id": "score",
            "action": "echo",
            "parameters": {"street": "${lookup.output.street}", "city": "${input.address.city}"},
            "personal_data": True,
        },
    ],
}
"""Personal: email and street (input), lookup's street, mail's ``to`` (its parameter
refers to the email, and its output echoes it), score's whole output."""

ANN = {
    "customer_id": "cust-ann",
    "name": "Ann",
    "email": "ann.secret@example.com",
    "address": {"street": "1 Hidden Lane", "city": "Leeds"},
}
BOB = {**ANN, "customer_id": "cust-bob", "email": "bob.secret@example.com"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


def run(url: str, *inputs: dict[str, Any], definition: dict[str, Any] = ONBOARDING) -> list[str]:
    async def go() -> list[str]:
        async with WorkflowEngine(url) as engine:
            states = [await engine.run_workflow(definition, data, timeout=WAIT) for data in inputs]
        assert all(state.status is ExecutionStatus.COMPLETED for state in states)
        return [state.execution_id for state in states]

    return asyncio.run(go())


def stored_bytes(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger(url) as opened:
        yield opened


def test_personal_values_never_reach_the_store_in_clear_and_the_engine_reads_them(
    url: str,
) -> None:
    (execution_id,) = run(url, ANN)

    stored = stored_bytes(url)
    for secret in (b"ann.secret@example.com", b"1 Hidden Lane"):
        assert secret not in stored
    assert b"Leeds" in stored  # not personal, not sealed: the test can tell
    with Ledger(url) as ledger:
        state = ledger.get(execution_id)
    assert state.outputs["score"] == {"street": "1 Hidden Lane", "city": "Leeds"}
    assert state.input == ANN


def test_forgetting_a_subject_redacts_its_values_everywhere_and_keeps_the_chain(
    url: str, ledger: Ledger
) -> None:
    ann, bob = run(url, ANN, BOB)

    report = ledger.forget_subject("cust-ann", "dpo@example.com", "erasure request 12")

    assert report.key_destroyed and report.executions == (ann,)
    state = ledger.get(ann)
    assert state.input["email"] == state.input["address"]["street"] == REDACTED
    assert state.input["name"] == "Ann" and state.input["address"]["city"] == "Leeds"
    assert state.outputs["lookup"] == {"name": "Ann", "street": REDACTED}
    assert state.outputs["score"] == REDACTED
    assert ledger.get(ann, version=3).input["email"] == REDACTED  # time travel too
    started = [e for e in ledger.history(ann) if e.type == "StepStarted"]
    assert started[1].data["parameters"] == {"to": REDACTED, "ref": "R-1"}
    assert ledger.verify().ok
    assert verify_bundle(ledger.export(ann)).ok
    assert ledger.get(bob).input == BOB  # another subject is untouched
    (line,) = [line for line in ledger.timeline(ann) if line.type == "SubjectForgotten"]
    assert (line.actor, line.reason, line.intervention) == (
        "dpo@example.com",
        "erasure request 12",
        True,
    )


def test_forgetting_again_records_nothing_and_needs_who_and_why(url: str, ledger: Ledger) -> None:
    (ann,) = run(url, ANN)
    ledger.forget_subject("cust-ann", "dpo", "request 12")
    version = ledger.get(ann).version

    again = ledger.forget_subject("cust-ann", "dpo", "request 12")

    assert (again.key_destroyed, again.executions) == (False, ())
    assert ledger.get(ann).version == version
    with pytest.raises(OperatorActionError):
        ledger.forget_subject("cust-bob", "", "request 13")


def test_a_subject_forgotten_while_its_execution_waits_is_redacted_from_then_on(
    url: str,
) -> None:
    definition = {
        **ONBOARDING,
        "steps": [
            {"id": "held", "action": "held"},
            {"id": "later", "action": "echo", "parameters": {"e": "${input.email}"}},
        ],
    }

    async def go() -> str:
        gate = Gate()
        async with WorkflowEngine(url) as engine:
            engine.action("held")(gate)
            execution_id = await engine.start_workflow(definition, ANN)
            await gate.reached()
            engine.ledger.forget_subject("cust-ann", "dpo", "request 14")
            gate.open()
            state = await engine.wait_for(execution_id, timeout=WAIT)
            assert state.status is ExecutionStatus.COMPLETED
        return execution_id

    execution_id = asyncio.run(go())
    with Ledger(url) as ledger:
        assert ledger.get(execution_id).input["email"] == REDACTED
        assert ledger.verify(execution_id).ok
    assert b"ann.secret@example.com" not in stored_bytes(url)


def test_an_input_that_does_not_name_the_subject_is_refused_before_anything_is_recorded(
    url: str,
) -> None:
    async def go() -> None:
        async with WorkflowEngine(url) as engine:
            with pytest.raises(MissingInputError, match=r"input\.customer_id"):
                await engine.start_workflow(ONBOARDING, {"email": "x@example.com"})
            assert engine.ledger.list() == []

    asyncio.run(go())


def test_values_given_on_resume_are_sealed_by_the_engine_that_resumes(url: str) -> None:
    waiting = {
        **ONBOARDING,
        "steps": [
            {
                "id": "mail",
                "action": "echo",
                "parameters": {"to": "${input.email}"},
                "personal_data": True,
            }
        ],
    }

    async def go() -> str:
        async with WorkflowEngine(url) as first:
            paused = await first.run_workflow(waiting, {"customer_id": "c9"}, timeout=WAIT)
        assert paused.status is ExecutionStatus.PAUSED
        async with WorkflowEngine(url) as second:  # loads the execution: its guard too
            await second.resume_workflow(paused.execution_id, {"email": "late@example.com"})
            done = await second.wait_for(paused.execution_id, timeout=WAIT)
        assert done.outputs == {"mail": {"to": "late@example.com"}}
        return done.execution_id

    execution_id = asyncio.run(go())
    assert b"late@example.com" not in stored_bytes(url)
    with Ledger(url) as ledger:
        ledger.forget_subject("c9", "dpo", "request 15")
        assert ledger.get(execution_id).outputs == {"mail": REDACTED}


def test_notifications_and_listeners_carry_personal_values_sealed(url: str) -> None:
    async def go() -> None:
        heard: list[Any] = []
        async with WorkflowEngine(url) as engine:
            engine.add_listener(heard.append)
            state = await engine.run_workflow(ONBOARDING, ANN, timeout=WAIT)
            caught_up = [note async for note in engine.subscribe(state.execution_id)]
        (started,) = [note for note in caught_up if note.version == 1]
        assert is_sealed(started.data["input"]["email"])
        (listened,) = [entry for entry in heard if entry.version == 1]
        assert listened.data == started.data  # live and caught up alike

    asyncio.run(go())


def test_a_forgotten_subject_is_never_recorded_again(url: str, ledger: Ledger) -> None:
    run(url, ANN)
    ledger.forget_subject("cust-ann", "dpo", "request 16")

    async def go() -> None:
        async with WorkflowEngine(url) as engine:
            with pytest.raises(SubjectForgottenError, match="give it a new subject id"):
                await engine.start_workflow(ONBOARDING, ANN)
            assert len(engine.ledger.list()) == 1

    asyncio.run(go())


def test_a_legal_hold_stops_the_erasure_of_the_data_it_keeps(url: str, ledger: Ledger) -> None:
    (ann,) = run(url, ANN)
    ledger.place_legal_hold(ann, "counsel", "case 7")

    with pytest.raises(OperatorActionError, match="under legal hold"):
        ledger.forget_subject("cust-ann", "dpo", "request 17")

    assert ledger.get(ann).input == ANN
    ledger.release_legal_hold(ann, "counsel", "case closed")
    assert ledger.forget_subject("cust-ann", "dpo", "request 17").executions == (ann,)


def test_an_export_keeps_sealed_values_and_lists_those_redacted(url: str, ledger: Ledger) -> None:
    (ann,) = run(url, ANN)
    assert "redacted" not in ledger.export(ann)  # every key still there
    ledger.forget_subject("cust-ann", "dpo", "request 18")

    bundle = ledger.export(ann)

    assert verify_bundle(bundle).ok
    assert "ann.secret@example.com" not in str(bundle)
    listed = {(item["version"], item["path"]) for item in bundle["redacted"]}
    assert (1, "input.email") in listed
    assert (1, "input.address.street") in listed
    assert {item["value"] for item in bundle["redacted"]} == {REDACTED}
    with Ledger(f"{url}-copy.db") as copy:  # another store: no key travels with it
        assert copy.import_bundle(bundle) == ann
        assert copy.get(ann).input["email"] == REDACTED
