"""Crypto-shredding and purge on PostgreSQL: the rows the server holds, read with psycopg."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flowledger import ExecutionStatus, Ledger, WorkflowEngine, generate_cipher_key
from flowledger.domain.sealing import REDACTED
from flowledger.engine.encryption import CIPHER_KEY_ENV_VAR
from flowledger.engine.keystore import TABLE as KEY_TABLE
from flowledger.engine.ledger_app import LedgerApplication
from tests.integration.test_encryption_postgres import WAIT, rows

EMAIL = "ada.marker@example.org"

SIGN_UP = {
    "id": "sign-up",
    "personal_data": {"subject": "${input.customer_id}", "input": ["email"]},
    "retention": {"days": 7},
    "steps": [
        {
            "id": "notify",
            "action": "echo",
            "parameters": {"to": "${input.email}", "plan": "${input.plan}"},
            "personal_data": ["to"],
        }
    ],
}


@pytest.mark.parametrize("encrypted", [False, True])
async def test_forget_and_purge_on_postgresql(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, encrypted: bool
) -> None:
    monkeypatch.delenv(CIPHER_KEY_ENV_VAR, raising=False)
    key = generate_cipher_key() if encrypted else None
    engine = WorkflowEngine(postgres_url, cipher_key=key)
    try:
        async with engine:
            data = {"customer_id": "c-1", "email": EMAIL, "plan": "gold"}
            state = await engine.run_workflow(SIGN_UP, data, timeout=WAIT)
    finally:
        engine.close()
    assert state.status is ExecutionStatus.COMPLETED
    events = rows(postgres_url, f"{LedgerApplication.name.lower()}_events", "state")
    assert all(EMAIL.encode() not in bytes(stored) for stored in events)
    materials = rows(postgres_url, KEY_TABLE, "material")
    assert len(materials) == 3  # the subject-id secret, the subject's, the execution's
    assert all(str(m).startswith("wrapped:") == encrypted for m in materials)

    with Ledger(postgres_url, cipher_key=key) as ledger:
        assert ledger.get(state.execution_id).outputs["notify"]["to"] == EMAIL
        ledger.forget_subject("c-1", "dpo", "request 1")
        assert ledger.get(state.execution_id).outputs["notify"] == {"to": REDACTED, "plan": "gold"}
        later = datetime.now(UTC) + timedelta(days=8)
        (certificate,) = ledger.purge("ops", "retention", now=later)
        assert certificate["execution_id"] == state.execution_id
        assert ledger.get(state.execution_id).outputs == {"notify": REDACTED}
        assert ledger.verify().ok
    destroyed = rows(postgres_url, KEY_TABLE, "destroyed")
    assert sorted(destroyed) == [0, 1, 1]
