"""Encryption at rest on PostgreSQL: the rows the server holds, read with psycopg."""

from __future__ import annotations

from contextlib import closing

import pytest
from psycopg import sql

from flowledger import CipherKeyError, ExecutionStatus, Ledger, WorkflowEngine, generate_cipher_key
from flowledger.engine.encryption import CIPHER_KEY_ENV_VAR
from flowledger.engine.leases import TABLE as LEASE_TABLE
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.stores import parse_store_url
from tests.postgres import connect

WAIT = 60.0
"""Seconds a run may take before the test fails instead of hanging (CPU is shared)."""

SECRET = "customer-secret-4242"
EMAIL = "ada.marker@example.org"

PAYMENT = {
    "id": "payment",
    "steps": [
        {"id": "charge", "action": "echo", "parameters": {"card": "${input.card}"}},
        {"id": "notify", "action": "echo", "parameters": {"to": "${input.email}"}},
    ],
}


def rows(url: str, table: str, column: str) -> list[bytes | str]:
    """Every value of one column of a table in the store's schema."""
    schema = parse_store_url(url).env["POSTGRES_SCHEMA"]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.Identifier(column), sql.Identifier(schema, table)
    )
    with closing(connect(url)) as db:
        values = [row[0] for row in db.execute(query).fetchall()]
    return [bytes(value) if isinstance(value, memoryview) else value for value in values]


async def test_events_and_snapshots_on_postgresql_hold_no_payload(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CIPHER_KEY_ENV_VAR, raising=False)
    key = generate_cipher_key()
    engine = WorkflowEngine(postgres_url, cipher_key=key, snapshot_interval=2)
    try:
        async with engine:
            state = await engine.run_workflow(
                PAYMENT, {"card": SECRET, "email": EMAIL}, timeout=WAIT
            )
    finally:
        engine.close()
    assert state.status is ExecutionStatus.COMPLETED

    prefix = LedgerApplication.name.lower()
    events = rows(postgres_url, f"{prefix}_events", "state")
    snapshots = rows(postgres_url, f"{prefix}_snapshots", "state")
    assert events
    assert snapshots
    for stored in (*events, *snapshots):
        assert isinstance(stored, bytes)
        with pytest.raises(UnicodeDecodeError):  # JSON is text; ciphertext is not
            stored.decode("utf-8")
        assert SECRET.encode() not in stored
        assert EMAIL.encode() not in stored
    # Lease rows (gone once an execution ends) hold execution ids in clear text.
    assert set(rows(postgres_url, LEASE_TABLE, "execution_id")) <= {state.execution_id}

    with Ledger(postgres_url, cipher_key=key) as ledger:
        assert ledger.get(state.execution_id).steps["charge"].output == {"card": SECRET}
        assert ledger.verify().ok
    wrong = generate_cipher_key()
    with Ledger(postgres_url, cipher_key=wrong) as ledger, pytest.raises(CipherKeyError) as caught:
        ledger.history(state.execution_id)
    assert "the key is wrong" in str(caught.value)
    with Ledger(postgres_url) as ledger, pytest.raises(CipherKeyError, match="encrypted"):
        ledger.list()
