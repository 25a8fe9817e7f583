"""PostgreSQL for tests: a fresh schema per test on the server the environment names.

``FLOWLEDGER_TEST_POSTGRES`` names the server (default
``postgresql://postgres@127.0.0.1:5432/test``). The ``postgres_url`` fixture yields a
store URL whose ``?schema=`` is a new random name (the store creates the schema on first
use) and drops that schema afterwards, so tests are independent and leave nothing
behind. Tests that use it are marked ``postgres`` (``pytest -m "not postgres"`` leaves
them out).

When the server cannot be reached the tests are skipped with the reason, except under
``CI=true``, where they fail: CI must run them, never skip them quietly.

Loaded as a pytest plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from flowledger.engine.postgres_setup import connect as connect_to_store
from flowledger.engine.postgres_setup import one_line
from flowledger.engine.stores import mask_password, parse_store_url

if TYPE_CHECKING:
    import psycopg

SERVER_ENV_VAR = "FLOWLEDGER_TEST_POSTGRES"
"""The environment variable naming the test server."""

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The test server when the environment names none."""

PROBE_TIMEOUT = 5
"""Seconds to wait for the test server before calling it unreachable."""

SCHEMA_PREFIX = "flowledger_test_"
"""The names of the schemas tests create start with this."""


def server_url() -> str:
    """The test server's URL, from the environment or the default."""
    return os.environ.get(SERVER_ENV_VAR) or DEFAULT_SERVER_URL


def with_options(url: str, **options: object) -> str:
    """Return ``url`` with query options added (``?`` or ``&`` as needed)."""
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def connect(url: str) -> psycopg.Connection[Any]:
    """Open an autocommit psycopg connection to the server a store URL names."""
    probing = url if "connect_timeout=" in url else with_options(url, connect_timeout=PROBE_TIMEOUT)
    return connect_to_store(parse_store_url(probing))


def schema_exists(url: str, schema: str) -> bool:
    """Whether the server a store URL names has this schema."""
    with closing(connect(url)) as db:
        found = db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return found.fetchone() is not None


def drop_schema(url: str, schema: str) -> None:
    """Drop a schema and everything in it, if it exists."""
    from psycopg import sql

    statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    with closing(connect(url)) as db:
        db.execute(statement)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's URL, once it answers; skips (fails under CI) when it does not."""
    url = server_url()
    try:
        with closing(connect(url)):
            pass
    except Exception as error:  # whatever the reason, it is reported
        reason = (
            f"PostgreSQL not reachable at {mask_password(url)}; set {SERVER_ENV_VAR} "
            f"({type(error).__name__}: {parse_store_url(url).scrub(one_line(str(error)))})"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; PostgreSQL tests must run under CI=true", pytrace=False)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A store URL on the test server with a schema of its own, dropped afterwards."""
    schema = f"{SCHEMA_PREFIX}{uuid4().hex[:16]}"
    yield with_options(postgres_server, schema=schema)
    drop_schema(postgres_server, schema)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses ``postgres_url`` with the ``postgres`` marker."""
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
