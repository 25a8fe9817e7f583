"""Store URLs: every accepted form, every refusal, and the default."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.stores import (
    ACCEPTED_FORMS,
    STORE_ENV_VAR,
    StoreConfig,
    StoreError,
    mask_password,
    parse_store_url,
)
from flowledger.errors import FlowledgerError

SECRET = "s3cr3t-pw"


def refusal(url: str | None) -> str:
    with pytest.raises(FlowledgerError) as raised:
        parse_store_url(url)
    message = str(raised.value)
    assert isinstance(raised.value, StoreError)
    for form in ACCEPTED_FORMS:
        assert form in message
    assert SECRET not in message
    assert SECRET not in raised.value.url
    return message


def test_memory() -> None:
    config = parse_store_url("memory://")
    assert config.kind == "memory"
    assert dict(config.env) == {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def test_sqlite_relative_path_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    config = parse_store_url("sqlite:///data/flow.db")
    assert config.kind == "sqlite"
    assert dict(config.env) == {
        "PERSISTENCE_MODULE": "flowledger.engine.sqlite_store:LedgerSQLiteFactory",
        "SQLITE_DBNAME": str(tmp_path / "data" / "flow.db"),
    }


def test_sqlite_absolute_path_has_four_slashes(tmp_path: Path) -> None:
    config = parse_store_url(f"sqlite:///{tmp_path}/flow.db")
    assert str(tmp_path).startswith("/")
    assert config.env["SQLITE_DBNAME"] == str(tmp_path / "flow.db")


def test_the_default_is_flowledger_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORE_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    config = parse_store_url(None)
    assert config.url == "sqlite:///flowledger.db"
    assert config.env["SQLITE_DBNAME"] == str(tmp_path / "flowledger.db")


def test_the_environment_variable_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV_VAR, "memory://")
    assert parse_store_url(None).kind == "memory"
    assert parse_store_url("sqlite:///x.db").kind == "sqlite"  # an explicit URL wins


def test_postgresql_url_sets_every_connection_setting() -> None:
    config = parse_store_url(
        f"postgresql://flow%40user:{SECRET}@db.example.com:6543/ledger"
        "?pool_size=7&connect_timeout=12&max_overflow=0&conn_max_age=1.5&pre_ping=true"
        "&schema=audit&lock_timeout=3&max_waiting=2&idle_in_transaction_session_timeout=9"
    )
    assert config.kind == "postgresql"
    assert dict(config.env) == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "ledger",
        "POSTGRES_HOST": "db.example.com",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "flow@user",
        "POSTGRES_PASSWORD": SECRET,
        "POSTGRES_POOL_SIZE": "7",
        "POSTGRES_CONNECT_TIMEOUT": "12",
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONN_MAX_AGE": "1.5",
        "POSTGRES_PRE_PING": "true",
        "POSTGRES_SCHEMA": "audit",
        "POSTGRES_LOCK_TIMEOUT": "3",
        "POSTGRES_MAX_WAITING": "2",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "9",
    }


def test_postgres_alias_default_port_and_no_password() -> None:
    config = parse_store_url("postgres://flow@localhost/ledger")
    assert config.kind == "postgresql"
    assert config.env["POSTGRES_PORT"] == "5432"
    assert config.env["POSTGRES_PASSWORD"] == ""


def test_a_password_never_shows_in_repr_or_display_url() -> None:
    config = parse_store_url(f"postgresql://flow:{SECRET}@localhost:5432/ledger")
    assert config.env["POSTGRES_PASSWORD"] == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert config.display_url == "postgresql://flow:***@localhost:5432/ledger"
    assert "POSTGRES_PASSWORD" in repr(config)


def test_scrub_masks_the_password_in_any_text() -> None:
    config = parse_store_url(f"postgresql://flow:{SECRET}@localhost/ledger")
    assert config.scrub(f"auth failed for {SECRET}!") == "auth failed for ***!"
    assert parse_store_url("memory://").scrub("nothing to hide") == "nothing to hide"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://u:{SECRET}@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://u:{SECRET}@weird@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://u:a/{SECRET}@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://h/db?password={SECRET}&x=1", "postgresql://h/db?password=***&x=1"),
        ("sqlite:///a.db", "sqlite:///a.db"),
    ],
)
def test_mask_password(url: str, expected: str) -> None:
    assert mask_password(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("flowledger.db", "no scheme"),
        ("mysql://u:p@h/db", "unknown scheme 'mysql'"),
        ("memory://somewhere", "memory:// takes no path"),
        ("sqlite://", "sqlite:/// followed by the file's path"),
        ("sqlite:///", "sqlite:/// followed by the file's path"),
        ("sqlite://host/file.db", "sqlite:/// followed by the file's path"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite:///file::memory:?cache=shared", "use memory://"),
        ("sqlite:///file:x?mode=memory", "use memory://"),
        ("sqlite:///a.db?timeout=3", "takes no options"),
        ("sqlite:///no/such/dir/a.db", "does not exist"),
        (f"postgresql://u:{SECRET}@h:port/db", "port must be a number"),
        (f"postgresql://u:{SECRET}@h:0/db", "port must be a number"),
        (f"postgresql://u:{SECRET}@h:99999/db", "port must be a number"),
        (f"postgresql://u:{SECRET}@h", "database name"),
        (f"postgresql://u:{SECRET}@h/a/b", "database name"),
        (f"postgresql://:{SECRET}@h/db", "user"),
        ("postgresql://h/db", "user"),
        (f"postgresql://u:{SECRET}@/db", "host"),
        (f"postgresql://u:{SECRET}@h/db#frag", "fragment"),
        (f"postgresql://u:{SECRET}@h/db?pool_size=-1", "'pool_size' has an invalid value"),
        (f"postgresql://u:{SECRET}@h/db?pool_size=many", "'pool_size' has an invalid value"),
        (f"postgresql://u:{SECRET}@h/db?conn_max_age=soon", "'conn_max_age' has an invalid"),
        (f"postgresql://u:{SECRET}@h/db?pre_ping=perhaps", "'pre_ping' has an invalid value"),
        (f"postgresql://u:{SECRET}@h/db?schema=a;drop", "'schema' has an invalid value"),
        (f"postgresql://u:{SECRET}@h/db?sslmode=require", "unknown option 'sslmode'"),
        (f"postgresql://u:{SECRET}@h/db?pool_size=1&pool_size=2", "given twice"),
        (f"postgresql://u:{SECRET}@h/db?pool_size", "name=value pairs"),
    ],
)
def test_bad_urls_are_refused_naming_the_accepted_forms(url: str, reason: str) -> None:
    assert reason in refusal(url)


def test_a_directory_is_not_a_database_file(tmp_path: Path) -> None:
    assert "is a directory" in refusal(f"sqlite:///{tmp_path}")


def test_a_bad_url_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV_VAR, "redis://x")
    assert "unknown scheme 'redis'" in refusal(None)


def test_configs_compare_by_value() -> None:
    assert parse_store_url("memory://") == parse_store_url("memory://")
    assert isinstance(parse_store_url("memory://"), StoreConfig)


def test_a_file_that_is_not_a_database_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are notes, not a SQLite database " * 20)
    with pytest.raises(StoreError, match="cannot be opened"):
        LedgerApplication(f"sqlite:///{path}")


def test_postgresql_without_its_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # importing it fails, as if missing
    with pytest.raises(StoreError) as raised:
        LedgerApplication(f"postgresql://u:{SECRET}@localhost:1/db?connect_timeout=1")
    assert "flowledger[postgres]" in str(raised.value)
    assert SECRET not in str(raised.value)
