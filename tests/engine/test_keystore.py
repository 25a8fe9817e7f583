"""The key store of sealed payloads, on each kind of store: make, read, destroy."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowledger.engine.keystore import (
    KEY_BYTES,
    TABLE,
    KeyStore,
    MemoryKeyStore,
    open_key_store,
    subject_key_id,
)
from flowledger.engine.stores import parse_store_url
from flowledger.errors import StoreError
from tests.postgres import connect

WRAPPING_KEY = bytes(range(32))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., KeyStore]]:
    """Key stores of one kind; those of one test share one database."""
    if request.param == "memory":
        shared = MemoryKeyStore()
        yield lambda wrapping_key=None: shared
        return
    url = (
        f"sqlite:///{tmp_path}/keys.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    yield lambda wrapping_key=None: open_key_store(parse_store_url(url), wrapping_key)


def test_a_key_is_made_once_and_read_back(make_store: Callable[..., KeyStore]) -> None:
    keys = make_store()
    assert keys.material("subject:a") is None

    made = keys.create("subject:a")

    assert len(made) == KEY_BYTES
    assert keys.create("subject:a") == made
    assert make_store().material("subject:a") == made  # another opening of the store
    assert keys.create("subject:b") != made


def test_a_destroyed_key_is_gone_for_good(make_store: Callable[..., KeyStore]) -> None:
    keys = make_store()
    keys.create("subject:a")

    assert keys.destroy("subject:a") is True

    assert keys.material("subject:a") is None
    assert keys.destroyed("subject:a")
    assert keys.destroy("subject:a") is False  # nothing left to erase
    with pytest.raises(KeyError):
        keys.create("subject:a")  # a forgotten subject's key is never made again
    assert not keys.destroyed("subject:never-made")


def test_subject_key_ids_are_keyed_hashes_not_the_subject(
    make_store: Callable[..., KeyStore],
) -> None:
    keys = make_store()
    first = subject_key_id(keys, "customer-42@example.com")

    assert first == subject_key_id(keys, "customer-42@example.com")
    assert first != subject_key_id(keys, "customer-43@example.com")
    assert "customer" not in first and first.startswith("subject:")


def test_sqlite_erases_the_material_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    keys = open_key_store(parse_store_url(f"sqlite:///{path}"))
    material = keys.create("execution:1")
    encoded = base64.b64encode(material)
    assert encoded in path.read_bytes() + _wal(path)

    keys.destroy("execution:1")

    assert encoded not in path.read_bytes() + _wal(path)


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_keys_are_wrapped_with_the_stores_cipher_key(tmp_path: Path) -> None:
    url = parse_store_url(f"sqlite:///{tmp_path}/keys.db")
    wrapped = open_key_store(url, WRAPPING_KEY)
    material = wrapped.create("subject:a")

    with sqlite3.connect(tmp_path / "keys.db") as connection:
        (stored,) = connection.execute(f"SELECT material FROM {TABLE}").fetchone()
    assert stored.startswith("wrapped:")
    assert base64.b64encode(material).decode() not in stored
    assert open_key_store(url, WRAPPING_KEY).material("subject:a") == material
    with pytest.raises(StoreError, match="give the store's cipher key"):
        open_key_store(url).material("subject:a")
    with pytest.raises(StoreError, match="another cipher key"):
        open_key_store(url, bytes(32)).material("subject:a")


def test_postgres_rewrites_the_table_when_a_key_is_destroyed(postgres_url: str) -> None:
    keys = open_key_store(parse_store_url(postgres_url))
    keys.create("execution:1")
    keys.destroy("execution:1")

    with connect(postgres_url) as connection:
        schema = parse_store_url(postgres_url).env["POSTGRES_SCHEMA"]
        row = connection.execute(
            f'SELECT material, destroyed FROM "{schema}".{TABLE} WHERE key_id = %s',
            ("execution:1",),
        ).fetchone()
    assert row == (None, 1)
