"""The key store: keys of sealed payloads, kept in the ledger's own database.

Each key (a data subject's, or an execution's own for retention) is a row that can be
*destroyed*: its material is erased and a tombstone (when, and that it is gone) stays.
Keys are kept outside the events on purpose: events are never rewritten, while a key
must be truly gone once a subject is forgotten or an execution purged. The store is
chosen by the ledger's URL: a table in the SQLite file, a table in the PostgreSQL schema,
or memory. When the ledger encrypts at rest, key material is wrapped with that key too.

Erasure is as good as the database makes it: SQLite runs with ``secure_delete`` and its
write-ahead log is truncated after each erasure; PostgreSQL rewrites the table
(``VACUUM FULL``). Copies made before (backups, archived WAL) still hold the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flowledger.engine.postgres_setup import connect
from flowledger.engine.stores import StoreConfig
from flowledger.errors import StoreError

TABLE = "flowledger_keys"
"""The key table's name (in the store's schema)."""

PEPPER_ID = "pepper"
"""The row holding the secret that turns subject ids into key ids."""

KEY_BYTES = 32
"""AES-256 keys."""

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS {t} (key_id TEXT PRIMARY KEY,"
    " material TEXT, destroyed INTEGER NOT NULL DEFAULT 0)"
)

_CREATE_LOCK = 0x666C6F776B6579  # any number the engines agree on: "flowkey"


class KeyStore(Protocol):
    """Where the keys of sealed payloads are kept, and destroyed."""

    def material(self, key_id: str) -> bytes | None:
        """Return a key's material, or None when it never existed or was destroyed."""

    def create(self, key_id: str) -> bytes:
        """Return a key's material, making the key first if it does not exist.

        Raises:
            KeyError: The key was destroyed (a forgotten key is never made again).
        """

    def destroy(self, key_id: str) -> bool:
        """Erase a key's material; True when there was material to erase."""

    def destroyed(self, key_id: str) -> bool:
        """True when the key existed and was destroyed."""

    def close(self) -> None:
        """Release the store's connection (if it holds one)."""


def subject_key_id(store: KeyStore, subject: str) -> str:
    """Return the key id of a data subject: a keyed hash of its id, never the id itself."""
    pepper = store.create(PEPPER_ID)
    digest = hmac.new(pepper, subject.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"subject:{digest[:32]}"


class SqlKeyStore:
    """Keys in a table beside the events (SQLite file or PostgreSQL schema).

    Args:
        run: Runs one statement (``{t}`` for the table, ``?`` placeholders) in its
            own transaction and returns its rows; the table exists.
        erase: Runs after a key is destroyed, to erase the old bytes from disk.
        wrapping_key: When given, key material is stored encrypted with it.
        close: Releases the connection, if one is held.
    """

    def __init__(
        self,
        run: Callable[..., list[tuple[Any, ...]]],
        erase: Callable[[], None],
        wrapping_key: bytes | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._run = run
        self._erase = erase
        self._close = close
        self._wrap = None if wrapping_key is None else AESGCM(wrapping_key)
        self._lock = threading.Lock()
        self._pepper: bytes | None = None

    def material(self, key_id: str) -> bytes | None:  # noqa: D102 - see KeyStore
        rows = self._run("SELECT material FROM {t} WHERE key_id = ?", key_id)
        if not rows or rows[0][0] is None:
            return None
        return self._unwrapped(key_id, rows[0][0])

    def create(self, key_id: str) -> bytes:  # noqa: D102
        if key_id == PEPPER_ID and self._pepper is not None:
            return self._pepper  # never destroyed: read once
        with self._lock:
            rows = self._run("SELECT material FROM {t} WHERE key_id = ?", key_id)
            if not rows:  # made here, unless another process makes it first
                fresh = self._wrapped(key_id, os.urandom(KEY_BYTES))
                self._run(
                    "INSERT INTO {t} (key_id, material) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    key_id,
                    fresh,
                )
                rows = self._run("SELECT material FROM {t} WHERE key_id = ?", key_id)
        if rows[0][0] is None:
            raise KeyError(key_id)
        material = self._unwrapped(key_id, rows[0][0])
        if key_id == PEPPER_ID:
            self._pepper = material
        return material

    def destroy(self, key_id: str) -> bool:  # noqa: D102
        rows = self._run(
            "UPDATE {t} SET material = NULL, destroyed = 1"
            " WHERE key_id = ? AND material IS NOT NULL RETURNING key_id",
            key_id,
        )
        if rows:
            self._erase()
        return bool(rows)

    def destroyed(self, key_id: str) -> bool:  # noqa: D102
        rows = self._run("SELECT destroyed FROM {t} WHERE key_id = ?", key_id)
        return bool(rows and rows[0][0])

    def close(self) -> None:  # noqa: D102
        if self._close is not None:
            self._close()

    def _wrapped(self, key_id: str, material: bytes) -> str:
        if self._wrap is None:
            return base64.b64encode(material).decode("ascii")
        nonce = os.urandom(12)
        sealed = self._wrap.encrypt(nonce, material, key_id.encode("utf-8"))
        return "wrapped:" + base64.b64encode(nonce + sealed).decode("ascii")

    def _unwrapped(self, key_id: str, text: str) -> bytes:
        if not text.startswith("wrapped:"):
            return base64.b64decode(text)
        if self._wrap is None:
            raise StoreError(TABLE, "the keys are wrapped: give the store's cipher key")
        raw = base64.b64decode(text.removeprefix("wrapped:"))
        try:
            return self._wrap.decrypt(raw[:12], raw[12:], key_id.encode("utf-8"))
        except Exception as error:  # InvalidTag: another cipher key
            raise StoreError(TABLE, "the keys were wrapped with another cipher key") from error


class MemoryKeyStore(SqlKeyStore):
    """Keys in an in-memory SQLite database (for ``memory://`` stores)."""

    def __init__(self, wrapping_key: bytes | None = None) -> None:
        connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        lock = threading.Lock()

        def run(statement: str, *args: Any) -> list[tuple[Any, ...]]:
            with lock:
                return connection.execute(statement.format(t=TABLE), args).fetchall()

        run(CREATE_TABLE)
        super().__init__(run, lambda: None, wrapping_key, connection.close)


def open_key_store(store: StoreConfig, wrapping_key: bytes | None = None) -> KeyStore:
    """Return the key store beside the events of ``store``.

    Raises:
        StoreError: The database cannot be reached, or the table cannot be created.
    """
    if store.kind == "sqlite":
        run, erase, close = _sqlite(store)
    elif store.kind == "postgresql":
        run, erase, close = _postgres(store)
    else:
        return MemoryKeyStore(wrapping_key)
    return SqlKeyStore(run, erase, wrapping_key, close)


def _sqlite(
    store: StoreConfig,
) -> tuple[Callable[..., list[tuple[Any, ...]]], Callable[[], None], Callable[[], None]]:
    lock = threading.Lock()
    try:
        connection = sqlite3.connect(
            store.env["SQLITE_DBNAME"], timeout=30, isolation_level=None, check_same_thread=False
        )
        # Erased rows are overwritten with zeros, not just marked free.
        connection.execute("PRAGMA secure_delete = ON")
    except sqlite3.Error as error:
        raise StoreError(store.display_url, f"key store: {error}") from error

    def run(statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with lock:
            try:
                return connection.execute(statement.format(t=TABLE), args).fetchall()
            except sqlite3.Error as error:
                raise StoreError(store.display_url, f"key store: {error}") from error

    def erase() -> None:
        run("PRAGMA wal_checkpoint(TRUNCATE)")

    run(CREATE_TABLE)
    return run, erase, connection.close


def _postgres(
    store: StoreConfig,
) -> tuple[Callable[..., list[tuple[Any, ...]]], Callable[[], None], Callable[[], None]]:
    import psycopg  # noqa: PLC0415 - the postgres extra is needed only here

    schema = store.env.get("POSTGRES_SCHEMA")  # an identifier: checked with the URL
    table = f'"{schema}".{TABLE}' if schema else TABLE
    lock = threading.Lock()
    connection = connect(store)

    def run(statement: str, *args: Any) -> list[tuple[Any, ...]]:
        query = statement.format(t=table).replace("?", "%s").encode("utf-8")
        with lock:
            try:
                cursor = connection.execute(query, args)
                return cursor.fetchall() if cursor.description else []
            except psycopg.Error as error:
                raise StoreError(store.display_url, f"key store: {error}") from error

    # Engines starting together would race on CREATE ... IF NOT EXISTS (not atomic in
    # PostgreSQL): each takes a transaction-scoped advisory lock first.
    try:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            if schema:
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'.encode())
            connection.execute(CREATE_TABLE.format(t=table).encode("utf-8"))
    except psycopg.Error as error:
        raise StoreError(store.display_url, f"key store: {error}") from error

    def erase() -> None:
        run("VACUUM FULL {t}")

    return run, erase, connection.close
