"""Retention: purge past retention, legal hold, deletion certificates, the skeleton kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowledger import ExecutionStatus, Ledger, WorkflowEngine
from flowledger.domain.canonical import canonical_json, sha256_hex
from flowledger.domain.sealing import REDACTED
from flowledger.engine.bundles import verify_bundle
from flowledger.errors import OperatorActionError
from tests.unit.conftest import WAIT

RETAINED: dict[str, Any] = {
    "id": "invoicing",
    "retention": {"days": 30},
    "steps": [
        {"id": "bill", "action": "echo", "parameters": {"amount": "${input.amount}"}},
        {"id": "send", "action": "echo", "parameters": {"billed": "${bill.output.amount}"}},
    ],
}
KEPT = {**RETAINED, "id": "kept", "retention": None}
KEPT.pop("retention")
LATER = datetime.now(UTC) + timedelta(days=31)


def run(url: str, definition: dict[str, Any], *amounts: int) -> list[str]:
    async def go() -> list[str]:
        async with WorkflowEngine(url) as engine:
            return [
                (await engine.run_workflow(definition, {"amount": n}, timeout=WAIT)).execution_id
                for n in amounts
            ]

    return asyncio.run(go())


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


def test_nothing_is_due_before_the_retention_period_ends(url: str) -> None:
    run(url, RETAINED, 7)
    with Ledger(url) as ledger:
        assert ledger.purge("ops", "nightly retention") == []
        assert ledger.purge_due(LATER - timedelta(days=2)) == []


def test_a_purge_destroys_every_payload_and_keeps_a_verifiable_skeleton(url: str) -> None:
    (execution_id,) = run(url, RETAINED, 4242)
    (kept,) = run(url, KEPT, 99)
    with Ledger(url) as ledger:
        before = ledger.history(execution_id)

        (certificate,) = ledger.purge("ops", "nightly retention", now=LATER)

        state = ledger.get(execution_id)
        assert state.status is ExecutionStatus.COMPLETED
        assert state.input == REDACTED
        assert state.outputs == {"bill": REDACTED, "send": REDACTED}
        assert ledger.get(kept).outputs["bill"] == {"amount": 99}  # no retention: kept
        assert ledger.verify().ok
        assert verify_bundle(ledger.export(execution_id)).ok
        skeleton = ledger.skeleton(execution_id)
        assert [(e["version"], e["type"], e["hash"]) for e in skeleton[: len(before)]] == [
            (e.version, e.type, e.hash) for e in before
        ]
        assert certificate == ledger.deletion_certificate(execution_id)
        assert certificate["events"] == len(before)
        assert certificate["chain_head"] == before[-1].hash
        assert certificate["skeleton_sha256"] == sha256_hex(
            canonical_json(skeleton[: certificate["events"]])
        )
        assert (certificate["actor"], certificate["reason"]) == ("ops", "nightly retention")
        assert ledger.history(execution_id)[-1].type == "ExecutionPurged"
        assert ledger.purge("ops", "again", now=LATER) == []  # purged once
    assert b"4242" not in Path(url.removeprefix("sqlite:///")).read_bytes()


def test_a_legal_hold_keeps_an_execution_until_it_is_released(url: str) -> None:
    held, other = run(url, RETAINED, 1, 2)
    with Ledger(url) as ledger:
        ledger.place_legal_hold(held, "counsel", "case 2026-17")
        (due,) = [c for c in ledger.purge_due(LATER) if c.execution_id == held]
        assert due.refusal == "it is under legal hold"

        purged = ledger.purge("ops", "retention", now=LATER)

        assert [c["execution_id"] for c in purged] == [other]
        assert ledger.get(held).outputs["bill"] == {"amount": 1}
        with pytest.raises(OperatorActionError, match="under legal hold already"):
            ledger.place_legal_hold(held, "counsel", "again")
        ledger.release_legal_hold(held, "counsel", "case closed")
        assert [c["execution_id"] for c in ledger.purge("ops", "retention", now=LATER)] == [held]
        with pytest.raises(OperatorActionError, match="it was purged"):
            ledger.place_legal_hold(held, "counsel", "too late")
        with pytest.raises(OperatorActionError, match="not under legal hold"):
            ledger.release_legal_hold(held, "counsel", "nothing held")
        lines = [line for line in ledger.timeline(held) if line.intervention]
        assert [line.type for line in lines] == [
            "LegalHoldPlaced",
            "LegalHoldReleased",
            "ExecutionPurged",
        ]


def test_a_dry_run_changes_nothing(url: str) -> None:
    (execution_id,) = run(url, RETAINED, 3)
    with Ledger(url) as ledger:
        version = ledger.get(execution_id).version
        (would,) = ledger.purge("ops", "retention", now=LATER, dry_run=True)
        assert would["execution_id"] == execution_id
        assert ledger.get(execution_id).version == version
        assert ledger.get(execution_id).outputs["bill"] == {"amount": 3}
        assert ledger.deletion_certificate(execution_id) is None


def test_an_unfinished_execution_is_never_purged_and_a_purge_needs_who_and_why(
    url: str,
) -> None:
    waiting = {
        **RETAINED,
        "steps": [{"id": "ask", "action": "echo", "parameters": {"x": "${input.x}"}}],
    }

    async def go() -> str:
        async with WorkflowEngine(url) as engine:
            return (await engine.run_workflow(waiting, {}, timeout=WAIT)).execution_id

    paused = asyncio.run(go())
    with Ledger(url) as ledger:
        assert ledger.get(paused).status is ExecutionStatus.PAUSED
        assert ledger.purge("ops", "retention", now=LATER) == []
        with pytest.raises(OperatorActionError):
            ledger.purge("", "retention", now=LATER)


def test_a_purge_is_recorded_when_it_happens_and_a_purged_failure_is_not_retried(
    url: str,
) -> None:
    failing = {
        **RETAINED,
        "steps": [{"id": "bill", "action": "fail", "retry": {"max_attempts": 1}}],
    }

    async def go() -> str:
        async with WorkflowEngine(url) as engine:
            state = await engine.run_workflow(failing, {"amount": 1}, timeout=WAIT)
            assert state.status is ExecutionStatus.FAILED
            return state.execution_id

    execution_id = asyncio.run(go())
    with Ledger(url) as ledger:
        (certificate,) = ledger.purge("ops", "retention", now=LATER)
        times = [entry.timestamp for entry in ledger.history(execution_id)]
        assert times == sorted(times)  # judged as of later, recorded now
        assert certificate["judged_as_of"] == LATER.isoformat()
        assert certificate["purged_at"] == times[-1].isoformat()

    async def retry() -> None:
        async with WorkflowEngine(url) as engine:
            with pytest.raises(OperatorActionError, match="was purged"):
                await engine.retry_workflow(execution_id, actor="ann", reason="again")
            with pytest.raises(OperatorActionError, match="was purged"):
                await engine.skip_step(execution_id, "bill", actor="ann", reason="skip")

    asyncio.run(retry())
