"""Store URLs, and the eventsourcing configuration each one stands for.

This module is the one place where a store is chosen. A URL names the store
(``memory://``, ``sqlite:///path.db``, ``postgresql://user:pw@host:port/db``) and
:func:`parse_store_url` turns it into a :class:`StoreConfig` whose ``env`` is what the
eventsourcing ``Application`` is configured with. Passwords never appear in messages or
``repr``: they are masked wherever a URL is shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from eventsourcing.utils import strtobool

from flowledger.engine.sqlite_store import FACTORY_TOPIC as SQLITE_FACTORY_TOPIC
from flowledger.errors import StoreError

StoreKind = Literal["memory", "sqlite", "postgresql"]
"""The kinds of store flowledger can record to."""

STORE_ENV_VAR = "FLOWLEDGER_STORE"
"""The environment variable that overrides the default store URL."""

DEFAULT_STORE_URL = "sqlite:///flowledger.db"
"""The store used when none is named: a SQLite file in the working directory."""

ACCEPTED_FORMS = (
    "memory://",
    "sqlite:///relative/path.db",
    "sqlite:////absolute/path.db",
    "postgresql://user:password@host:port/dbname[?option=value&...]",
)
"""The URL forms :func:`parse_store_url` accepts, as shown in its error messages."""

DEFAULT_POSTGRES_PORT = 5432
"""The port of a PostgreSQL URL that names none."""

MASK = "***"
"""What a password is replaced with wherever a URL is shown."""

_POSTGRES_SCHEMES = ("postgresql", "postgres")
# Greedy up to the last "@", so a password holding "@" or "/" is masked whole.
_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^/@:]*:).*(?P<tail>@)")
_PASSWORD_OPTION = re.compile(r"(?P<head>password=)[^&#]*", re.IGNORECASE)
_PASSWORD_KEY = "POSTGRES_PASSWORD"  # noqa: S105 - a variable name, not a secret


@dataclass(frozen=True, repr=False)
class StoreConfig:
    """A parsed store URL.

    Attributes:
        url: The URL as given (it may hold a password: show :attr:`display_url`).
        kind: ``"memory"``, ``"sqlite"`` or ``"postgresql"``.
        env: The eventsourcing environment that selects and configures the store
            (``PERSISTENCE_MODULE`` and the module's own settings), read-only.
    """

    url: str
    kind: StoreKind
    env: Mapping[str, str] = field(hash=False)

    @property
    def display_url(self) -> str:
        """The URL with its password (if any) masked."""
        return mask_password(self.url)

    def scrub(self, text: str) -> str:
        """Return ``text`` (a driver's message, say) with this store's password masked."""
        password = self.env.get(_PASSWORD_KEY)
        return text.replace(password, MASK) if password else text

    def __repr__(self) -> str:
        shown = {key: MASK if key == _PASSWORD_KEY else value for key, value in self.env.items()}
        return f"StoreConfig(url={self.display_url!r}, kind={self.kind!r}, env={shown!r})"


def mask_password(url: str) -> str:
    """Return ``url`` with its password masked (``user:password@`` or ``password=``)."""
    masked = _PASSWORD_IN_URL.sub(rf"\g<head>{MASK}\g<tail>", url)
    return _PASSWORD_OPTION.sub(rf"\g<head>{MASK}", masked)


def parse_store_url(url: str | None = None) -> StoreConfig:
    """Return the store configuration a URL names.

    Args:
        url: A store URL (see :data:`ACCEPTED_FORMS`). None means the URL in the
            ``FLOWLEDGER_STORE`` environment variable if it is set, else
            :data:`DEFAULT_STORE_URL`. A relative SQLite path is resolved against the
            working directory now, so a later change of directory does not move it.

    Raises:
        StoreError: The URL is not one of the accepted forms, has an invalid part,
            or names a SQLite file in a directory that does not exist. The message names
            the accepted forms and never shows a password.
    """
    if url is None:
        url = os.environ.get(STORE_ENV_VAR) or DEFAULT_STORE_URL
    text = url.strip()
    scheme, separator, _ = text.partition("://")
    if not text:
        raise _invalid(url, "it is empty")
    if not separator:
        raise _invalid(url, "it has no scheme")
    parser = _PARSERS.get(scheme.lower())
    if parser is None:
        raise _invalid(url, f"unknown scheme {scheme!r}")
    return parser(url, text)


def _invalid(url: str, reason: str) -> StoreError:
    return StoreError(
        mask_password(url), f"invalid URL: {reason}. Accepted forms: {', '.join(ACCEPTED_FORMS)}"
    )


def _memory(url: str, text: str) -> StoreConfig:
    if text.lower() != "memory://":
        raise _invalid(url, "memory:// takes no path or options")
    return StoreConfig(
        url, "memory", MappingProxyType({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    )


def _sqlite(url: str, text: str) -> StoreConfig:
    rest = text[len("sqlite://") :]
    if not rest.startswith("/") or rest == "/":
        raise _invalid(url, "a SQLite URL is sqlite:/// followed by the file's path")
    path_text = rest[1:]
    if ":memory:" in path_text or "mode=memory" in path_text:
        # eventsourcing's connection pool gives each connection its own in-memory
        # SQLite database; the in-process store does what is meant, reliably.
        raise _invalid(
            url, "in-memory SQLite is not supported; use memory:// for an in-process store"
        )
    if "?" in path_text:
        raise _invalid(url, "a SQLite URL takes no options")
    path = Path(path_text).absolute()
    if path.is_dir():
        raise _invalid(url, f"{path} is a directory, not a database file")
    if not path.parent.is_dir():
        raise _invalid(url, f"the directory {path.parent} does not exist (create it first)")
    env = {"PERSISTENCE_MODULE": SQLITE_FACTORY_TOPIC, "SQLITE_DBNAME": str(path)}
    return StoreConfig(url, "sqlite", MappingProxyType(env))


def _count(text: str) -> bool:
    return text.isdecimal()


def _seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def _flag(text: str) -> bool:
    try:
        strtobool(text)
    except ValueError:
        return False
    return True


_POSTGRES_OPTIONS: Mapping[str, tuple[str, Callable[[str], bool]]] = {
    "pool_size": ("POSTGRES_POOL_SIZE", _count),
    "max_overflow": ("POSTGRES_MAX_OVERFLOW", _count),
    "max_waiting": ("POSTGRES_MAX_WAITING", _count),
    "connect_timeout": ("POSTGRES_CONNECT_TIMEOUT", _count),
    "lock_timeout": ("POSTGRES_LOCK_TIMEOUT", _count),
    "idle_in_transaction_session_timeout": (
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        _count,
    ),
    "conn_max_age": ("POSTGRES_CONN_MAX_AGE", _seconds),
    "pre_ping": ("POSTGRES_PRE_PING", _flag),
    "schema": ("POSTGRES_SCHEMA", str.isidentifier),
}
"""Query options of a PostgreSQL URL: eventsourcing's variable, and a value check."""


def _postgres(url: str, text: str) -> StoreConfig:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise _invalid(url, "the port must be a number from 1 to 65535")
    if parts.fragment:
        raise _invalid(url, "a PostgreSQL URL has no #fragment")
    missing = [
        name for name, value in (("user", parts.username), ("host", parts.hostname)) if not value
    ]
    dbname = unquote(parts.path.removeprefix("/"))
    if not dbname or "/" in dbname:
        missing.append("database name")
    if missing:
        raise _invalid(url, f"the {' and '.join(missing)} are missing or malformed")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": str(parts.hostname),
        "POSTGRES_PORT": str(port or DEFAULT_POSTGRES_PORT),
        "POSTGRES_USER": unquote(str(parts.username)),
        _PASSWORD_KEY: unquote(parts.password or ""),
        **_postgres_options(url, parts),
    }
    return StoreConfig(url, "postgresql", MappingProxyType(env))


def _postgres_options(url: str, parts: SplitResult) -> dict[str, str]:
    env: dict[str, str] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _invalid(url, "its options are not name=value pairs joined by &") from None
    for name, value in pairs:
        known = _POSTGRES_OPTIONS.get(name)
        if known is None:
            raise _invalid(url, f"unknown option {name!r} (known: {', '.join(_POSTGRES_OPTIONS)})")
        variable, valid = known
        if variable in env:
            raise _invalid(url, f"option {name!r} is given twice")
        if not valid(value):
            raise _invalid(url, f"option {name!r} has an invalid value {value!r}")
        env[variable] = value
    return env


_PARSERS: Mapping[str, Callable[[str, str], StoreConfig]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    **dict.fromkeys(_POSTGRES_SCHEMES, _postgres),
}
