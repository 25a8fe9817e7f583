"""Signed export bundles: an Ed25519 signature over a bundle's chain head.

The signature covers a small *statement* about the bundle, not the bundle's text: its
execution id, definition hash, number of events and chain head, plus when and by whom
it was signed. The chain head is the hash of the last event, and each event's hash
covers the previous one, so signing the head commits to every event; checking the
events against the head is :func:`~flowledger.engine.bundles.verify_bundle`'s work.
A bundle stays readable JSON, and re-indenting it does not break its signature.

A signed bundle is an ordinary bundle with one more key, ``signature``::

    {
      "algorithm": "Ed25519",
      "signed": {
        "format": "flowledger.signature/1",
        "bundle_format": "flowledger.export/1",
        "execution_id": "...",
        "definition_hash": "...",
        "events": 14,
        "chain_head": "...",
        "signed_at": "2025-01-31T12:00:00+00:00",
        "signer": "audit team"            (or null)
      },
      "public_key_fingerprint": "<SHA-256 of the raw 32-byte public key, hex>",
      "value": "<the signature of canonical_json(signed), base64>"
    }
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flowledger.domain.canonical import canonical_json
from flowledger.engine.audit import VerifyProblem, VerifyReport
from flowledger.engine.bundle_events import json_type
from flowledger.engine.bundles import verify_bundle
from flowledger.errors import ChainError, SigningKeyError

ALGORITHM = "Ed25519"
"""The only signature algorithm a signed bundle uses."""

SIGNATURE_FORMAT = "flowledger.signature/1"
"""The ``format`` of a signed statement; a new version changes the suffix."""

SIGNED_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "format": str,
    "bundle_format": str,
    "execution_id": str,
    "definition_hash": str,
    "events": int,
    "chain_head": str,
    "signed_at": str,
    "signer": (str, type(None)),
}
"""The fields of a signed statement and the JSON type of each."""

_MATCHED = ("execution_id", "definition_hash", "chain_head")
"""Signed fields that must equal the bundle's fields of the same name."""


@dataclass(frozen=True)
class SigningKeyPair:
    """A fresh Ed25519 key pair, PEM-encoded.

    Attributes:
        private_pem: The private key, PKCS8, unencrypted: keep it secret.
        public_pem: The public key, SubjectPublicKeyInfo: give it to verifiers.
        fingerprint: SHA-256 of the raw public key, hex (what a signature names).
    """

    private_pem: bytes
    public_pem: bytes
    fingerprint: str


def generate_signing_key() -> SigningKeyPair:
    """Generate a new Ed25519 key pair for signing bundles."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_key = private_key.public_key()
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKeyPair(private_pem, public_pem, _fingerprint(public_key))


def public_key_fingerprint(public_key_pem: bytes) -> str:
    """Return the fingerprint a signature made with this key's private half names.

    Raises:
        SigningKeyError: Not a PEM Ed25519 public key.
    """
    return _fingerprint(_load_public_key(public_key_pem))


def sign_bundle(
    bundle: Mapping[str, Any],
    private_key_pem: bytes,
    *,
    signer: str | None = None,
    at: datetime,
) -> dict[str, Any]:
    """Return a copy of ``bundle`` with a ``signature`` over its chain head.

    The bundle is verified first: a bundle that does not verify is not signed. A
    signature the bundle already carries is replaced.

    Args:
        bundle: The document ``Ledger.export`` returned (or its JSON, parsed).
        private_key_pem: An unencrypted PEM Ed25519 private key (PKCS8).
        signer: Who signs, as the verifier should read it (signed too); optional.
        at: When it is signed (a time with a UTC offset; recorded in UTC).

    Returns:
        A new dict: the bundle's keys, and ``signature`` (see the module's docstring).

    Raises:
        SigningKeyError: The key is not a PEM Ed25519 private key.
        ChainError: The bundle does not verify (every problem is listed).
        ValueError: ``at`` has no UTC offset.
    """
    private_key = _load_private_key(private_key_pem)
    if at.utcoffset() is None:
        raise ValueError("the signing time needs a UTC offset")
    report = verify_bundle(bundle)
    if not report.ok:
        listing = "; ".join(f"version {found.version}: {found.reason}" for found in report.problems)
        raise ChainError(report.problems[0].version, f"the bundle does not verify ({listing})")
    signed = {
        "format": SIGNATURE_FORMAT,
        "bundle_format": bundle["format"],
        "execution_id": bundle["execution_id"],
        "definition_hash": bundle["definition_hash"],
        "events": len(bundle["events"]),
        "chain_head": bundle["chain_head"],
        "signed_at": at.astimezone(UTC).isoformat(),
        "signer": signer,
    }
    value = private_key.sign(canonical_json(signed).encode("utf-8"))
    signature = {
        "algorithm": ALGORITHM,
        "signed": signed,
        "public_key_fingerprint": _fingerprint(private_key.public_key()),
        "value": base64.b64encode(value).decode("ascii"),
    }
    return {**bundle, "signature": signature}


def verify_signed_bundle(bundle: Any, public_key_pem: bytes) -> VerifyReport:
    """Verify a signed bundle offline: its hash chain, and its signature with this key.

    Every check of :func:`~flowledger.engine.bundles.verify_bundle` runs, then the
    signature's: it is there and well formed, its statement names this bundle (its
    execution, definition hash, number of events and chain head), it names this public
    key, and it verifies with it. A problem is reported, never raised; signature
    problems are at version 0.

    Args:
        bundle: A bundle ``sign_bundle`` returned (or its JSON, parsed).
        public_key_pem: The signer's PEM Ed25519 public key.

    Returns:
        The report: ``ok`` only when both the chain and the signature verify.

    Raises:
        SigningKeyError: The key is not a PEM Ed25519 public key (a problem with the
            verifier's input, not with the bundle).
    """
    public_key = _load_public_key(public_key_pem)
    report = verify_bundle(bundle)
    subject = _subject(bundle)
    found = [
        VerifyProblem(subject, 0, reason) for reason in _signature_problems(bundle, public_key)
    ]
    problems = sorted([*report.problems, *found], key=lambda problem: problem.version)
    return VerifyReport(not problems, report.checked, tuple(problems), report.executions)


def _signature_problems(bundle: Any, public_key: Ed25519PublicKey) -> list[str]:
    """What is wrong with a bundle's signature, for this key (nothing when it verifies)."""
    signature = bundle.get("signature") if isinstance(bundle, Mapping) else None
    if signature is None:
        return ["the bundle is not signed"]
    if not isinstance(signature, Mapping):
        return [f"the signature is {json_type(signature)}, not an object"]
    problems = _envelope_problems(signature, public_key)
    signed = signature.get("signed")
    if not isinstance(signed, Mapping):
        return [*problems, f"the signature's signed statement is {json_type(signed)}"]
    statement_problems = _statement_problems(signed, bundle)
    problems.extend(statement_problems)
    value = _signature_bytes(signature.get("value"), problems)
    if value is None or statement_problems:
        return problems
    try:
        public_key.verify(value, canonical_json(signed).encode("utf-8"))
    except InvalidSignature:
        problems.append("the signature does not verify with this public key")
    except (TypeError, ValueError):  # json.loads reads NaN, which JSON cannot hold
        problems.append("the signed statement holds a value JSON cannot hold")
    return problems


def _envelope_problems(signature: Mapping[str, Any], public_key: Ed25519PublicKey) -> list[str]:
    """The signature's algorithm and the key it names."""
    problems = []
    if signature.get("algorithm") != ALGORITHM:
        problems.append(f"signature algorithm is {signature.get('algorithm')!r}, not {ALGORITHM!r}")
    named, expected = signature.get("public_key_fingerprint"), _fingerprint(public_key)
    if named != expected:
        problems.append(f"the bundle names signing key {named!r}, not this public key {expected}")
    return problems


def _statement_problems(signed: Mapping[str, Any], bundle: Mapping[str, Any]) -> list[str]:
    """The signed statement's shape, and that it speaks of this bundle."""
    missing = [key for key in SIGNED_KEYS if key not in signed]
    if missing:
        return [f"the signed statement lacks {', '.join(missing)}"]
    problems = [
        f"signed {key} is {json_type(signed[key])}"
        for key, kind in SIGNED_KEYS.items()
        if not isinstance(signed[key], kind) or isinstance(signed[key], bool)
    ]
    if problems:
        return problems
    if signed["format"] != SIGNATURE_FORMAT:
        return [f"signed statement format is {signed['format']!r}, not {SIGNATURE_FORMAT!r}"]
    expected = {key: bundle.get(key) for key in _MATCHED}
    expected["bundle_format"] = bundle.get("format")
    events = bundle.get("events")
    expected["events"] = len(events) if isinstance(events, list) else None
    return [
        f"signed {key.replace('_', ' ')} {signed[key]!r} differs from the bundle's {value!r}"
        for key, value in expected.items()
        if signed[key] != value
    ]


def _signature_bytes(value: Any, problems: list[str]) -> bytes | None:
    """The signature's bytes, or None (with a problem) when ``value`` is not base64."""
    if not isinstance(value, str):
        problems.append(f"the signature value is {json_type(value)}, not base64 text")
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        problems.append("the signature value is not base64")
        return None


def _load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Read a PEM private key; refuse anything but an unencrypted Ed25519 one."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise SigningKeyError("private", "it is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        reason = "it is not a PEM private key"
        if b"PUBLIC KEY-----" in pem:
            reason = "it is a public key; signing needs the private key"
        raise SigningKeyError("private", reason) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("private", f"it is {_kind(key)} key, not an Ed25519 one")
    return key


def _load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Read a PEM public key; refuse anything but an Ed25519 one."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        reason = "it is not a PEM public key"
        if b"PRIVATE KEY-----" in pem:
            reason = "it is a private key; give its public key (never share the private one)"
        raise SigningKeyError("public", reason) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("public", f"it is {_kind(key)} key, not an Ed25519 one")
    return key


def _kind(key: object) -> str:
    """Name a key's type for a message ("an RSA", "an EC", ...), never its bytes."""
    name = type(key).__name__.removesuffix("PrivateKey").removesuffix("PublicKey")
    return f"an {name}" if name[:1] in "AEIORSX" else f"a {name}"


def _fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _subject(bundle: Any) -> str:
    if isinstance(bundle, Mapping) and isinstance(bundle.get("execution_id"), str):
        return str(bundle["execution_id"])
    return "?"
