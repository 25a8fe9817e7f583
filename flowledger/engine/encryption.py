"""Encryption at rest: the cipher key, and telling a wrong key from a damaged record.

A store is encrypted when a cipher key is given (the ``cipher_key`` argument, else the
``FLOWLEDGER_CIPHER_KEY`` environment variable, read here and nowhere else). Every
event's and snapshot's state is then compressed (zlib) and encrypted (AES-GCM, with
eventsourcing's ``eventsourcing.cryptography:AESCipher``); ids, topics, versions and
the notification log's order stay in clear text, as eventsourcing stores them.

A key is the base64 encoding of 16, 24 or 32 random bytes (:func:`generate_cipher_key`
makes a 32-byte one). It is checked when the store is opened, and a set but empty
``FLOWLEDGER_CIPHER_KEY`` is refused rather than taken to mean "no encryption": a
secret that failed to arrive must not silently turn into a store in clear text.

When a stored record cannot be decoded, :class:`KeyCheck` decides whether the key is
to blame (a wrong key, no key for an encrypted store, a key for a store in clear text)
or the record itself is damaged, by trying the store's first records: if one of them
decodes, the key fits and the record is damaged.
"""

from __future__ import annotations

import binascii
import os
from base64 import b64decode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from uuid import UUID

from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import (
    ApplicationRecorder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from eventsourcing.utils import TopicError

from flowledger.errors import CipherKeyError, CorruptRecordError

__all__ = [
    "CIPHER_KEY_ENV_VAR",
    "CIPHER_KEY_SIZES",
    "CIPHER_TOPIC",
    "COMPRESSOR_TOPIC",
    "Encryption",
    "KeyCheck",
    "generate_cipher_key",
    "resolve_encryption",
]

CIPHER_KEY_ENV_VAR = "FLOWLEDGER_CIPHER_KEY"
"""The environment variable holding the cipher key when none is passed."""

CIPHER_KEY_ARGUMENT = "cipher_key"
"""How a key passed as an argument is named in messages."""

CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"
"""eventsourcing's AES-GCM cipher built on the ``cryptography`` package."""

COMPRESSOR_TOPIC = "eventsourcing.compressor:ZlibCompressor"
"""States are compressed before they are encrypted (ciphertext does not compress)."""

CIPHER_KEY_SIZES = AESCipher.KEY_SIZES
"""The key lengths AES accepts, in bytes (before base64)."""

GENERATED_KEY_BYTES = 32
"""The length of the keys :func:`generate_cipher_key` makes: AES-256."""

PROBED_RECORDS = 5
"""How many of a store's first records are tried when a record cannot be decoded."""

_EXPECTED_FORM = (
    f"expected the base64 encoding of {', '.join(map(str, CIPHER_KEY_SIZES[:-1]))} or "
    f"{CIPHER_KEY_SIZES[-1]} random bytes (make one with `flowledger cipher-key`)"
)


@dataclass(frozen=True, repr=False)
class Encryption:
    """A checked cipher key, as eventsourcing settings.

    Attributes:
        source: Where the key came from: ``"cipher_key"`` or ``"FLOWLEDGER_CIPHER_KEY"``.
        env: ``CIPHER_TOPIC``, ``CIPHER_KEY`` and ``COMPRESSOR_TOPIC``, read-only
            (it holds the key: never show it).
    """

    source: str
    env: Mapping[str, str] = field(hash=False)

    def __repr__(self) -> str:
        return f"Encryption(source={self.source!r}, key=***)"


def generate_cipher_key() -> str:
    """Return a new random cipher key: the base64 encoding of 32 bytes (AES-256).

    Keep it in a secret manager: without it the store's events cannot be read.
    """
    return AESCipher.create_key(num_bytes=GENERATED_KEY_BYTES)


def resolve_encryption(cipher_key: str | None = None) -> Encryption | None:
    """Return the encryption a key asks for, or None for a store in clear text.

    Args:
        cipher_key: A key (see :func:`generate_cipher_key`). None reads the
            ``FLOWLEDGER_CIPHER_KEY`` environment variable; when that is not set
            either, events are stored in clear text.

    Raises:
        CipherKeyError: The key (given or from the environment) is empty, is not
            base64, or does not decode to 16, 24 or 32 bytes. The message names where
            the key came from, never the key.
    """
    source = CIPHER_KEY_ARGUMENT
    if cipher_key is None:
        cipher_key = os.environ.get(CIPHER_KEY_ENV_VAR)
        if cipher_key is None:
            return None
        source = CIPHER_KEY_ENV_VAR
    key = cipher_key.strip()  # a key read from a file may end with a newline
    _check_key(key, source)
    env = {"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": key, "COMPRESSOR_TOPIC": COMPRESSOR_TOPIC}
    return Encryption(source, MappingProxyType(env))


def _check_key(key: str, source: str) -> None:
    if not key:
        unset = f"; unset {CIPHER_KEY_ENV_VAR} for a store in clear text"
        hint = unset if source == CIPHER_KEY_ENV_VAR else ""
        raise CipherKeyError(source, f"invalid cipher key in {source}: it is empty{hint}")
    try:
        size = len(b64decode(key.encode("ascii"), validate=True))
    except (UnicodeEncodeError, binascii.Error):
        reason = f"invalid cipher key in {source}: it is not base64; {_EXPECTED_FORM}"
        raise CipherKeyError(source, reason) from None
    if size not in CIPHER_KEY_SIZES:
        reason = f"invalid cipher key in {source}: it decodes to {size} bytes; {_EXPECTED_FORM}"
        raise CipherKeyError(source, reason)


class KeyCheck:
    """Tells whether an application's key (or lack of one) fits the store's events.

    Args:
        mapper: The application's mapper (with a cipher when a key was given).
        recorder: The application's recorder, to read the store's first records.
        source: Where the key came from, or None when the application has none.
        store: The store's URL with its password masked, for messages.
    """

    def __init__(
        self,
        mapper: Mapper[UUID],
        recorder: ApplicationRecorder,
        source: str | None,
        store: str,
    ) -> None:
        self._mapper = mapper
        self._recorder = recorder
        self._source = source
        self._store = store
        self._fits = False  # once a record decodes, the key is known to fit for good

    def require_fit(self) -> None:
        """Refuse to write with a key that does not read what the store holds.

        So that one store never holds events under two keys, or encrypted and in
        clear text. Reads the store's first records until they are found to fit; an
        empty store fits any key.

        Raises:
            CipherKeyError: The key is wrong, or missing, or given for a store in
                clear text.
        """
        if self._fits:
            return
        problem = self._problem(self._first_records())
        if problem is not None:
            raise problem

    def explain(self, error: CorruptRecordError) -> None:
        """Raise a :class:`CipherKeyError` if the key, not the record, is to blame.

        Returns (and the caller re-raises ``error``) when the record could not be
        decoded for another reason, or when the store's other records decode: then
        this record is damaged.
        """
        if self._fits or not isinstance(error.__cause__, MapperDeserialisationError):
            return
        problem = self._problem(self._first_records())
        if problem is None:
            return
        raise problem from error.__cause__

    def _first_records(self) -> Sequence[StoredEvent]:
        return self._recorder.select_notifications(1, PROBED_RECORDS)

    def _problem(self, records: Sequence[StoredEvent]) -> CipherKeyError | None:
        """Say why ``records`` (the store's first) do not fit the key, or fit it."""
        if not records:
            return None
        if _any_decodes(self._mapper, records) or (
            # Damaged, or encrypted? Without a key, only when none of them is text is
            # the store taken to be encrypted: ciphertext is never long valid UTF-8.
            self._source is None and any(_is_text(record.state) for record in records)
        ):
            self._fits = True
            return None
        if self._source is None:
            reason = (
                "cannot read the stored events: they are encrypted (or not flowledger's) "
                f"and no cipher key was given; set {CIPHER_KEY_ENV_VAR} to the store's key"
            )
            return CipherKeyError(None, reason, self._store)
        if _any_decodes(Mapper(transcoder=self._mapper.transcoder), records):
            reason = (
                f"the stored events are not encrypted, but a cipher key was given "
                f"({self._source}): open this store without one (encryption cannot be "
                "turned on for a store that holds events: export and import them into a "
                "new encrypted store)"
            )
            return CipherKeyError(self._source, reason, self._store)
        reason = (
            f"cannot decrypt the stored events with the cipher key from {self._source}: "
            "the key is wrong, or the store was written with another key"
        )
        return CipherKeyError(self._source, reason, self._store)


def _any_decodes(mapper: Mapper[UUID], records: Iterable[StoredEvent]) -> bool:
    for record in records:
        try:
            mapper.to_domain_event(record)
        except (MapperDeserialisationError, TopicError):
            continue
        return True
    return False


def _is_text(state: bytes) -> bool:
    try:
        bytes(state).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
