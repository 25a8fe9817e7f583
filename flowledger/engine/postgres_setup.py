"""Getting a PostgreSQL store ready before eventsourcing opens it.

eventsourcing's connection pool connects in the background and retries, so a server
that is down, a wrong password or a missing database all surface, after the pool's
timeout, as "couldn't get a connection after 30.00 sec". One direct connection first
gives the driver's own reason at once. It also creates the schema the URL names:
eventsourcing creates its tables in that schema, but not the schema itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flowledger.engine.stores import StoreConfig
from flowledger.errors import StoreError

if TYPE_CHECKING:
    import psycopg

DEFAULT_CONNECT_TIMEOUT = 30
"""Seconds to wait for the server when the URL sets no ``connect_timeout``.

The same as eventsourcing's own default for its connection pool.
"""

DRIVER_HINT = "install flowledger[postgres]"
"""What to do when the PostgreSQL driver is missing."""


SETUP_LOCK = 0x666C6F77736574  # any number every engine agrees on
"""The advisory lock that lets one process at a time create or update the tables."""


@contextlib.contextmanager
def prepare_postgres(store: StoreConfig) -> Iterator[None]:
    """Check the server, create the URL's schema, and hold the set-up lock meanwhile.

    The caller opens the store while the lock is held (a session's advisory lock).

    Engines starting together would otherwise race on eventsourcing's
    ``CREATE TABLE IF NOT EXISTS`` and ``CREATE OR REPLACE FUNCTION``, which are not
    atomic in PostgreSQL (``tuple concurrently updated``).

    Args:
        store: A parsed ``postgresql://`` URL.

    Raises:
        StoreError: The driver is not installed, the server cannot be reached or
            refuses the connection (unknown user or database, wrong password), or the
            schema cannot be created. The message is one line, names the server's
            ``host:port`` and never shows the password.
    """
    connection = connect(store)
    import psycopg  # noqa: PLC0415 - connect() has checked the driver is there

    env = store.env
    where = server_address(env["POSTGRES_HOST"], env["POSTGRES_PORT"])
    schema = env.get("POSTGRES_SCHEMA")

    with connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
        if schema:
            try:
                _create_schema(connection, schema)
            except psycopg.Error as error:
                reason = f"cannot create schema {schema!r} at {where}: {one_line(str(error))}"
                raise _store_error(store, reason) from error
        yield  # the session's advisory lock ends with the connection


def _create_schema(connection: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    from psycopg import errors, sql  # noqa: PLC0415 - see prepare_postgres

    # Looked up first: CREATE SCHEMA checks the CREATE privilege even when the schema
    # exists, and a user of a schema made by an administrator need not have it.
    found = connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if found.fetchone() is not None:
        return
    # Two processes creating the same schema at once: one of them loses on the
    # catalogue's unique index, even with IF NOT EXISTS. The schema exists either way.
    with contextlib.suppress(errors.UniqueViolation):
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def connect(store: StoreConfig) -> psycopg.Connection[tuple[object, ...]]:
    """Open one autocommit connection to a PostgreSQL store's server.

    Raises:
        StoreError: The driver is not installed, or the server cannot be reached or
            refuses the connection. One line, naming ``host:port``, never the password.
    """
    try:
        # The driver is an optional extra: only PostgreSQL stores need it.
        import psycopg  # noqa: PLC0415
    except ImportError as error:
        raise _store_error(
            store, f"cannot be opened: no PostgreSQL driver ({DRIVER_HINT})"
        ) from error
    env = store.env
    try:
        return psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT),
            autocommit=True,
        )
    except psycopg.Error as error:
        where = server_address(env["POSTGRES_HOST"], env["POSTGRES_PORT"])
        reason = f"cannot connect to PostgreSQL at {where}: {one_line(str(error))}"
        raise _store_error(store, reason) from error


def server_address(host: str, port: str) -> str:
    """Return ``host:port`` as it is written in messages (``[::1]:5432`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def one_line(text: str) -> str:
    """Return a driver's message on one line (libpq adds hints on lines of their own)."""
    return " ".join(text.split())


def _store_error(store: StoreConfig, reason: str) -> StoreError:
    return StoreError(store.display_url, store.scrub(reason))
