"""Encryption at rest: what a real engine stores with a cipher key, and reading it back.

Every store here is a real SQLite file in the test's ``tmp_path``; the raw bytes of the
files are read to prove no payload is readable.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowledger import (
    CipherKeyError,
    CorruptRecordError,
    ExecutionStatus,
    Ledger,
    WorkflowEngine,
    generate_cipher_key,
)
from flowledger.domain.execution import execution_uuid
from flowledger.engine.encryption import CIPHER_KEY_ENV_VAR, resolve_encryption
from flowledger.engine.ledger_app import LedgerApplication

WAIT = 10.0
"""Seconds a run may take before the test fails instead of hanging."""

SECRET = "customer-secret-4242"
NAME = "Ada Marker-Lovelace"
EMAIL = "ada.marker@example.org"
WORKFLOW_ID = "payroll-marker-workflow"
MARKERS = (SECRET, NAME, EMAIL, WORKFLOW_ID)
"""Distinctive strings in the input, parameters, outputs and definition of a run."""

JSON_KEYS = (b'"output"', b'"parameters"', b'"workflow_id"', b'"definition"', b'"input"')
"""Keys of the events' JSON payloads: readable in a store in clear text."""

PAYROLL = {
    "id": WORKFLOW_ID,
    "steps": [
        {
            "id": "greet",
            "action": "echo",
            "parameters": {"name": "${input.customer.name}", "email": "${input.customer.email}"},
        },
        {"id": "charge", "action": "echo", "parameters": {"card": "${input.card}"}},
        {"id": "receipt", "action": "echo", "parameters": {"to": "${greet.output.email}"}},
    ],
}
INPUT = {"customer": {"name": NAME, "email": EMAIL}, "card": SECRET}


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which key it uses (the suite may run with one in the environment)."""
    monkeypatch.delenv(CIPHER_KEY_ENV_VAR, raising=False)


@pytest.fixture
def key() -> str:
    return generate_cipher_key()


@dataclass
class Recorded:
    url: str
    path: Path
    execution_id: str


async def record(
    path: Path, cipher_key: str | None, *, snapshot_interval: int = 100, runs: int = 1
) -> Recorded:
    """Run the payroll workflow ``runs`` times on a SQLite file; close the engine."""
    url = f"sqlite:///{path}"
    engine = WorkflowEngine(url, cipher_key=cipher_key, snapshot_interval=snapshot_interval)
    async with engine:
        states = [await engine.run_workflow(PAYROLL, INPUT, timeout=WAIT) for _ in range(runs)]
    engine.close()
    assert all(state.status is ExecutionStatus.COMPLETED for state in states)
    assert states[0].steps["receipt"].output == {"to": EMAIL}
    return Recorded(url, path, states[0].execution_id)


def raw_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, as stored on disk."""
    files = [path, path.with_name(f"{path.name}-wal")]
    return b"".join(file.read_bytes() for file in files if file.exists())


def is_text(state: bytes) -> bool:
    """Whether a stored state is UTF-8 text (JSON is; ciphertext never is)."""
    try:
        state.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def stored_states(path: Path, table: str) -> list[bytes]:
    with closing(sqlite3.connect(path)) as db:
        return [bytes(state) for (state,) in db.execute(f"SELECT state FROM {table}")]


@pytest.fixture
async def encrypted(tmp_path: Path, key: str) -> Recorded:
    """Two payroll runs in a store encrypted with ``key``, snapshotted every 2 events."""
    return await record(tmp_path / "x.db", key, snapshot_interval=2, runs=2)


# -- what is stored -------------------------------------------------------------------


async def test_no_payload_byte_is_readable_in_an_encrypted_store(encrypted: Recorded) -> None:
    stored = raw_bytes(encrypted.path)
    for marker in MARKERS:
        assert marker.encode() not in stored
    for json_key in JSON_KEYS:
        assert json_key not in stored
    assert not any(is_text(state) for state in stored_states(encrypted.path, "stored_events"))


async def test_the_same_run_without_a_key_is_readable(tmp_path: Path) -> None:
    plain = await record(tmp_path / "plain.db", None)
    stored = raw_bytes(plain.path)
    assert all(marker.encode() in stored for marker in MARKERS)
    assert all(json_key in stored for json_key in JSON_KEYS)


async def test_snapshots_are_encrypted_too(encrypted: Recorded, key: str) -> None:
    snapshots = stored_states(encrypted.path, "stored_snapshots")
    assert snapshots, "the run took no snapshot"
    for state in snapshots:
        assert not is_text(state)
        assert all(marker.encode() not in state for marker in MARKERS)
    with Ledger(encrypted.url, cipher_key=key) as ledger:
        store = ledger.application.snapshots
        assert store is not None
        taken = list(store.get(execution_uuid(encrypted.execution_id)))
    assert taken
    assert SECRET in repr(vars(taken[-1]))  # the key decrypts them


async def test_the_read_models_file_holds_no_payload(encrypted: Recorded, key: str) -> None:
    with Ledger(encrypted.url, cipher_key=key) as ledger:
        assert len(ledger.list()) == 2
        assert ledger.metrics()
    views = raw_bytes(encrypted.path.with_name("x.views.db"))
    assert all(marker.encode() not in views for marker in (SECRET, NAME, EMAIL))


# -- reading with the right key -------------------------------------------------------


async def test_history_time_travel_verify_export_and_listing_work(
    encrypted: Recorded, key: str
) -> None:
    with Ledger(encrypted.url, cipher_key=key) as ledger:
        history = ledger.history(encrypted.execution_id)
        first = ledger.get(encrypted.execution_id, version=1)
        report = ledger.verify()
        bundle = ledger.export(encrypted.execution_id)
        listed = ledger.list(workflow_id=WORKFLOW_ID)

    assert history[0].type == "ExecutionStarted"
    assert history[0].data["input"] == INPUT
    assert (first.version, first.input, first.outputs) == (1, INPUT, {})
    assert report.ok
    assert report.executions == 2
    assert SECRET in str(bundle["events"])
    assert [state.status for state in listed] == [ExecutionStatus.COMPLETED] * 2


async def test_export_then_import_moves_an_execution_to_a_store_with_another_key(
    encrypted: Recorded, key: str, tmp_path: Path
) -> None:
    new_key = generate_cipher_key()
    target = f"sqlite:///{tmp_path}/rotated.db"
    with Ledger(encrypted.url, cipher_key=key) as old:
        bundle = old.export(encrypted.execution_id)
    with Ledger(target, cipher_key=new_key) as new:
        assert new.import_bundle(bundle) == encrypted.execution_id
        assert new.verify().ok
        assert new.get(encrypted.execution_id).steps["charge"].output == {"card": SECRET}
    assert SECRET.encode() not in raw_bytes(tmp_path / "rotated.db")
    with Ledger(target, cipher_key=key) as wrong, pytest.raises(CipherKeyError):
        wrong.history(encrypted.execution_id)


async def test_an_in_process_store_encrypts_too(key: str) -> None:
    engine = WorkflowEngine("memory://", cipher_key=key)
    async with engine:
        state = await engine.run_workflow(PAYROLL, INPUT, timeout=WAIT)
        app = engine.ledger.application
        records = app.stored_records(execution_uuid(state.execution_id))
        assert engine.ledger.verify().ok
    engine.close()
    assert all(SECRET.encode() not in bytes(record.state) for record in records)


# -- the wrong key, no key, a key on a store in clear text ----------------------------


def _reads(url: str, cipher_key: str | None, execution_id: str) -> list[Any]:
    """Try each way of reading; return the errors raised."""
    errors = []
    calls = (
        lambda ledger: ledger.get(execution_id),
        lambda ledger: ledger.get(execution_id, version=1),
        lambda ledger: ledger.history(execution_id),
        lambda ledger: ledger.verify(),
        lambda ledger: ledger.list(),
        lambda ledger: ledger.export(execution_id),
    )
    for call in calls:
        with Ledger(url, cipher_key=cipher_key) as ledger:
            with pytest.raises(CipherKeyError) as caught:
                call(ledger)
            errors.append(caught.value)
    return errors


async def test_a_wrong_key_is_a_clear_error_that_never_shows_a_key(
    encrypted: Recorded, key: str
) -> None:
    wrong = generate_cipher_key()
    for error in _reads(encrypted.url, wrong, encrypted.execution_id):
        assert error.source == "cipher_key"
        assert "the key is wrong, or the store was written with another key" in str(error)
        assert encrypted.url in str(error)
        assert wrong not in str(error)
        assert key not in str(error)


async def test_an_encrypted_store_read_without_a_key_is_a_clear_error(
    encrypted: Recorded,
) -> None:
    for error in _reads(encrypted.url, None, encrypted.execution_id):
        assert error.source is None
        assert "encrypted" in str(error)
        assert CIPHER_KEY_ENV_VAR in str(error)


async def test_a_key_on_a_store_in_clear_text_is_a_clear_error(tmp_path: Path, key: str) -> None:
    plain = await record(tmp_path / "plain.db", None)
    for error in _reads(plain.url, key, plain.execution_id):
        assert "not encrypted" in str(error)
        assert key not in str(error)


async def test_writing_with_a_wrong_key_is_refused_and_records_nothing(
    encrypted: Recorded,
) -> None:
    before = stored_states(encrypted.path, "stored_events")
    engine = WorkflowEngine(encrypted.url, cipher_key=generate_cipher_key(), recover=False)
    try:
        async with engine:
            with pytest.raises(CipherKeyError):
                await engine.run_workflow(PAYROLL, INPUT, timeout=WAIT)
    finally:
        engine.close()
    assert stored_states(encrypted.path, "stored_events") == before


async def test_an_engine_with_a_wrong_key_does_not_start(encrypted: Recorded) -> None:
    engine = WorkflowEngine(encrypted.url, cipher_key=generate_cipher_key())
    try:
        with pytest.raises(CipherKeyError):
            await engine.start()
    finally:
        await engine.stop()
        engine.close()


def damage(path: Path, change: Callable[[bytes], bytes], versions: set[int] | None = None) -> None:
    """Apply ``change`` to the stored state of the given versions of every execution."""
    with closing(sqlite3.connect(path)) as db, db:
        stored = db.execute("SELECT originator_id, originator_version, state FROM stored_events")
        for aggregate, version, state in stored.fetchall():
            if versions is None or version in versions:
                db.execute(
                    "UPDATE stored_events SET state = ? "
                    "WHERE originator_id = ? AND originator_version = ?",
                    (change(bytes(state)), aggregate, version),
                )


def flip_last_bit(state: bytes) -> bytes:
    return state[:-1] + bytes([state[-1] ^ 1])


async def test_damaged_encrypted_records_are_reported_not_blamed_on_the_key(
    encrypted: Recorded, key: str
) -> None:
    damage(encrypted.path, flip_last_bit, {3})
    with Ledger(encrypted.url, cipher_key=key) as ledger:
        report = ledger.verify()
        with pytest.raises(CorruptRecordError):
            ledger.history(encrypted.execution_id)
    assert not report.ok
    assert [problem.version for problem in report.problems] == [3, 3]
    assert all("cannot be read" in problem.reason for problem in report.problems)


async def test_a_damaged_record_of_a_store_in_clear_text_is_reported(tmp_path: Path) -> None:
    plain = await record(tmp_path / "plain.db", None)
    damage(plain.path, lambda _: os.urandom(64), {2})
    with Ledger(plain.url) as ledger:
        report = ledger.verify()
    assert [problem.version for problem in report.problems] == [2]


async def test_a_store_in_clear_text_whose_first_records_are_damaged_is_reported(
    tmp_path: Path,
) -> None:
    plain = await record(tmp_path / "plain.db", None)
    damage(plain.path, lambda _: b"{not json")
    with Ledger(plain.url) as ledger:
        report = ledger.verify()
    assert [problem.version for problem in report.problems] == [1]


async def test_random_bytes_everywhere_read_as_an_encrypted_store(tmp_path: Path) -> None:
    plain = await record(tmp_path / "plain.db", None)
    damage(plain.path, lambda _: os.urandom(64))
    with Ledger(plain.url) as ledger, pytest.raises(CipherKeyError, match="encrypted"):
        ledger.verify()


# -- the key itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("malformed", "reason"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("not-base64!!", "it is not base64"),
        ("clé-secrète", "it is not base64"),
        (base64.b64encode(b"ten bytes!").decode(), "it decodes to 10 bytes"),
    ],
)
def test_a_malformed_key_is_refused_before_the_store_is_opened(
    malformed: str, reason: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/never.db"
    for construct in (
        lambda: LedgerApplication(url, cipher_key=malformed),
        lambda: Ledger(url, cipher_key=malformed),
        lambda: WorkflowEngine(url, cipher_key=malformed),
    ):
        with pytest.raises(CipherKeyError) as caught:
            construct()
        assert caught.value.source == "cipher_key"
        assert reason in caught.value.reason
        assert "base64" in str(caught.value) or "empty" in str(caught.value)
        if malformed.strip():
            assert malformed not in str(caught.value)
    assert not (tmp_path / "never.db").exists()


def test_a_malformed_key_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, "c2hvcnQ=")
    with pytest.raises(CipherKeyError) as caught:
        Ledger("memory://")
    assert caught.value.source == CIPHER_KEY_ENV_VAR
    assert "invalid cipher key in FLOWLEDGER_CIPHER_KEY" in str(caught.value)
    assert "c2hvcnQ=" not in str(caught.value)


def test_an_empty_key_in_the_environment_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, "")
    with pytest.raises(CipherKeyError, match=f"unset {CIPHER_KEY_ENV_VAR}"):
        WorkflowEngine("memory://")


@pytest.mark.parametrize("size", [16, 24, 32])
def test_keys_of_every_aes_size_are_accepted(size: int) -> None:
    key = base64.b64encode(bytes(range(size))).decode()
    encryption = resolve_encryption(f"{key}\n")  # as read from a file
    assert encryption is not None
    assert encryption.env["CIPHER_KEY"] == key
    assert key not in repr(encryption)


def test_no_key_and_no_variable_means_clear_text() -> None:
    assert resolve_encryption(None) is None
    with Ledger("memory://") as ledger:
        assert ledger.application.mapper.cipher is None


def test_a_key_and_an_application_are_not_both_given(key: str) -> None:
    with LedgerApplication("memory://") as app:
        with pytest.raises(ValueError, match="cipher key or an application"):
            Ledger(application=app, cipher_key=key)
        with pytest.raises(ValueError, match="cipher key or an application"):
            WorkflowEngine(application=app, cipher_key=key)


# -- the key from the environment -----------------------------------------------------


@pytest.fixture
async def from_environment(
    tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Recorded]:
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, key)
    yield await record(tmp_path / "env.db", None)


async def test_the_key_is_read_from_the_environment_when_none_is_given(
    from_environment: Recorded, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert SECRET.encode() not in raw_bytes(from_environment.path)
    with Ledger(from_environment.url) as ledger:
        assert ledger.get(from_environment.execution_id).steps["charge"].output == {"card": SECRET}
    other = generate_cipher_key()  # the argument wins over the environment
    with (
        Ledger(from_environment.url, cipher_key=other) as ledger,
        pytest.raises(CipherKeyError) as caught,
    ):
        ledger.history(from_environment.execution_id)
    assert caught.value.source == "cipher_key"
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, generate_cipher_key())
    with Ledger(from_environment.url) as ledger, pytest.raises(CipherKeyError) as caught:
        ledger.history(from_environment.execution_id)
    assert caught.value.source == CIPHER_KEY_ENV_VAR
    assert key not in str(caught.value)


async def test_a_long_execution_loads_from_its_encrypted_snapshot(tmp_path: Path, key: str) -> None:
    steps = [{"id": f"s{n}", "action": "echo", "parameters": {"card": SECRET}} for n in range(20)]
    long = {"id": "long", "steps": steps}
    url = f"sqlite:///{tmp_path}/long.db"
    engine = WorkflowEngine(url, cipher_key=key, snapshot_interval=5)
    async with engine:
        state = await engine.run_workflow(long, {}, timeout=WAIT)
    engine.close()
    assert state.version > 32  # long enough to be loaded from a snapshot
    assert SECRET.encode() not in raw_bytes(tmp_path / "long.db")
    with Ledger(url, cipher_key=key) as ledger:
        assert ledger.get(state.execution_id) == state
        assert ledger.get(state.execution_id, version=33).version == 33
    with Ledger(url, cipher_key=generate_cipher_key()) as ledger, pytest.raises(CipherKeyError):
        ledger.get(state.execution_id)
