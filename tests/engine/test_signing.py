"""Signed bundles: a real history from a SQLite file, signed and verified with real keys."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flowledger import SigningKeyError
from flowledger.domain.canonical import canonical_json
from flowledger.engine.bundles import import_bundle, verify_bundle
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import LedgerApplication
from flowledger.engine.signing import (
    SigningKeyPair,
    generate_signing_key,
    public_key_fingerprint,
    sign_bundle,
    verify_signed_bundle,
)
from flowledger.errors import ChainError
from tests.engine.test_bundles import exported, rehash
from tests.projections.test_timeline import retried_and_failed

Bundle = dict[str, Any]
SIGNED_AT = datetime(2025, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))


@pytest.fixture(scope="module")
def keys() -> SigningKeyPair:
    return generate_signing_key()


@pytest.fixture(scope="module")
def other_keys() -> SigningKeyPair:
    return generate_signing_key()


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    """The 14-event bundle of :func:`retried_and_failed`, exported from SQLite via JSON."""
    (found,) = exported(f"sqlite:///{tmp_path}/source.db", retried_and_failed())
    return found


@pytest.fixture
def signed(bundle: Bundle, keys: SigningKeyPair) -> Bundle:
    """The bundle signed by the auditors, sent as JSON and read back."""
    document = sign_bundle(bundle, keys.private_pem, signer="auditors", at=SIGNED_AT)
    return dict(json.loads(json.dumps(document)))


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LedgerApplication]:
    with LedgerApplication(f"sqlite:///{tmp_path}/target.db") as app:
        yield app


def reasons(report: Any) -> list[str]:
    return [problem.reason for problem in report.problems]


def versions(report: Any) -> list[int]:
    return [problem.version for problem in report.problems]


# -- keys -----------------------------------------------------------------------------


def test_a_generated_pair_is_pem_and_its_fingerprint_is_the_raw_public_key_hash(
    keys: SigningKeyPair,
) -> None:
    assert keys.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keys.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key(keys.public_pem)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert keys.fingerprint == hashlib.sha256(raw).hexdigest()
    assert public_key_fingerprint(keys.public_pem) == keys.fingerprint
    assert generate_signing_key().fingerprint != keys.fingerprint


# -- signing and verifying ------------------------------------------------------------


def test_a_signed_bundle_verifies_with_its_public_key(
    bundle: Bundle, signed: Bundle, keys: SigningKeyPair
) -> None:
    report = verify_signed_bundle(signed, keys.public_pem)

    assert report.ok, report.problems
    assert (report.checked, report.executions) == (14, 1)
    assert {key: signed[key] for key in bundle} == bundle


def test_the_signature_states_what_was_signed(signed: Bundle, keys: SigningKeyPair) -> None:
    signature = signed["signature"]

    assert signature["algorithm"] == "Ed25519"
    assert signature["public_key_fingerprint"] == keys.fingerprint
    assert signature["signed"] == {
        "format": "flowledger.signature/1",
        "bundle_format": "flowledger.export/1",
        "execution_id": "ex",
        "definition_hash": signed["definition_hash"],
        "events": 14,
        "chain_head": signed["chain_head"],
        "signed_at": "2025-01-31T12:00:00+00:00",
        "signer": "auditors",
    }
    message = canonical_json(signature["signed"]).encode("utf-8")
    public = serialization.load_pem_public_key(keys.public_pem)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(signature["value"]), message)  # raises if it does not


def test_signing_leaves_the_given_bundle_alone(bundle: Bundle, keys: SigningKeyPair) -> None:
    before = copy.deepcopy(bundle)

    sign_bundle(bundle, keys.private_pem, at=SIGNED_AT)

    assert bundle == before


def test_re_indenting_a_signed_bundle_keeps_it_verifying(
    signed: Bundle, keys: SigningKeyPair
) -> None:
    text = json.dumps(signed, indent=7, sort_keys=True, ensure_ascii=True)

    assert verify_signed_bundle(json.loads(text), keys.public_pem).ok


def test_signing_again_replaces_the_signature(
    signed: Bundle, keys: SigningKeyPair, other_keys: SigningKeyPair
) -> None:
    again = sign_bundle(signed, other_keys.private_pem, signer=None, at=SIGNED_AT)

    assert again["signature"]["signed"]["signer"] is None
    assert verify_signed_bundle(again, other_keys.public_pem).ok
    assert not verify_signed_bundle(again, keys.public_pem).ok


def test_a_signed_bundle_still_verifies_and_imports_as_a_bundle(
    signed: Bundle, target: LedgerApplication
) -> None:
    assert verify_bundle(signed).ok

    assert import_bundle(target, signed) == "ex"

    assert Ledger(application=target).verify("ex").ok
    assert Ledger(application=target).export("ex") == {
        key: value for key, value in signed.items() if key != "signature"
    }


def test_a_bundle_that_does_not_verify_is_not_signed(bundle: Bundle, keys: SigningKeyPair) -> None:
    bundle["events"][2]["data"]["parameters"] = {"p": 2}

    with pytest.raises(ChainError, match="the bundle does not verify") as raised:
        sign_bundle(bundle, keys.private_pem, at=SIGNED_AT)

    assert raised.value.version == 3


def test_a_signing_time_without_an_offset_is_refused(bundle: Bundle, keys: SigningKeyPair) -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        sign_bundle(bundle, keys.private_pem, at=datetime(2025, 1, 31))


# -- what a signed bundle catches -----------------------------------------------------


def test_an_edited_event_fails_the_chain_at_its_version(
    signed: Bundle, keys: SigningKeyPair
) -> None:
    assert signed["events"][2]["data"]["parameters"] == {"p": 1}
    signed["events"][2]["data"]["parameters"] = {"p": 2}

    report = verify_signed_bundle(signed, keys.public_pem)

    assert not report.ok
    assert versions(report) == [3]
    assert "hash" in reasons(report)[0]


def test_a_consistently_rewritten_history_fails_the_signature(
    signed: Bundle, keys: SigningKeyPair
) -> None:
    signed["events"][2]["data"]["parameters"] = {"p": 2}
    rehash(signed)
    assert verify_bundle(signed).ok  # the forgery is internally consistent

    report = verify_signed_bundle(signed, keys.public_pem)

    assert not report.ok
    assert versions(report) == [0]
    assert reasons(report)[0].startswith("signed chain head ")
    assert "differs from the bundle's" in reasons(report)[0]


def test_a_rewritten_history_with_a_rewritten_statement_fails_the_signature(
    signed: Bundle, keys: SigningKeyPair
) -> None:
    signed["events"][2]["data"]["parameters"] = {"p": 2}
    signed["signature"]["signed"]["chain_head"] = rehash(signed)["chain_head"]

    report = verify_signed_bundle(signed, keys.public_pem)

    assert reasons(report) == ["the signature does not verify with this public key"]


def test_a_history_cut_short_fails_the_signature(signed: Bundle, keys: SigningKeyPair) -> None:
    del signed["events"][-1]
    signed["chain_head"] = signed["events"][-1]["hash"]
    assert verify_bundle(signed).ok

    found = reasons(verify_signed_bundle(signed, keys.public_pem))

    assert found == [
        f"signed chain head {signed['signature']['signed']['chain_head']!r} differs from the"
        f" bundle's {signed['chain_head']!r}",
        "signed events 14 differs from the bundle's 13",
    ]


def test_a_forger_who_signs_with_their_own_key_is_caught(
    signed: Bundle, keys: SigningKeyPair, other_keys: SigningKeyPair
) -> None:
    signed["events"][2]["data"]["parameters"] = {"p": 2}
    forged = sign_bundle(rehash(signed), other_keys.private_pem, signer="auditors", at=SIGNED_AT)

    found = reasons(verify_signed_bundle(forged, keys.public_pem))

    assert found == [
        f"the bundle names signing key {other_keys.fingerprint!r}, not this public key"
        f" {keys.fingerprint}",
        "the signature does not verify with this public key",
    ]


def test_another_public_key_does_not_verify(signed: Bundle, other_keys: SigningKeyPair) -> None:
    report = verify_signed_bundle(signed, other_keys.public_pem)

    assert not report.ok
    assert "the signature does not verify with this public key" in reasons(report)


def test_an_unsigned_bundle_is_a_problem(bundle: Bundle, keys: SigningKeyPair) -> None:
    report = verify_signed_bundle(bundle, keys.public_pem)

    assert not report.ok
    assert [(p.execution_id, p.version, p.reason) for p in report.problems] == [
        ("ex", 0, "the bundle is not signed")
    ]


def test_a_document_that_is_not_a_bundle_is_reported(keys: SigningKeyPair) -> None:
    report = verify_signed_bundle(["not", "a", "bundle"], keys.public_pem)

    assert not report.ok
    assert reasons(report) == [
        "a bundle is a JSON object, not an array",
        "the bundle is not signed",
    ]
    assert {problem.execution_id for problem in report.problems} == {"?"}


def _set(path: tuple[str, ...], value: Any) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        *parents, last = ("signature", *path)
        for key in parents:
            bundle = bundle[key]
        bundle[last] = value

    return change


def _drop(*path: str) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        *parents, last = ("signature", *path)
        for key in parents:
            bundle = bundle[key]
        del bundle[last]

    return change


MALFORMED: dict[str, tuple[Callable[[Bundle], None], list[str]]] = {
    "signature a string": (_set((), "signed"), ["the signature is a string, not an object"]),
    "signature null": (_set((), None), ["the bundle is not signed"]),
    "signed missing": (
        _drop("signed"),
        ["the signature's signed statement is null"],
    ),
    "signed an array": (_set(("signed",), []), ["the signature's signed statement is an array"]),
    "every part wrong": (
        _set((), {"algorithm": "HMAC", "signed": 1, "value": "x"}),
        [
            "signature algorithm is 'HMAC', not 'Ed25519'",
            "the bundle names signing key None, not this public key {fingerprint}",
            "the signature's signed statement is a number",
        ],
    ),
    "signed lacks fields": (
        _drop("signed", "chain_head"),
        ["the signed statement lacks chain_head"],
    ),
    "events a string": (_set(("signed", "events"), "14"), ["signed events is a string"]),
    "events a boolean": (_set(("signed", "events"), True), ["signed events is a boolean"]),
    "signer a number": (_set(("signed", "signer"), 7), ["signed signer is a number"]),
    "another statement format": (
        _set(("signed", "format"), "other/2"),
        ["signed statement format is 'other/2', not 'flowledger.signature/1'"],
    ),
    "another algorithm": (
        _set(("algorithm",), "RSA"),
        ["signature algorithm is 'RSA', not 'Ed25519'"],
    ),
    "value missing": (_drop("value"), ["the signature value is null, not base64 text"]),
    "value not base64": (_set(("value",), "%%%"), ["the signature value is not base64"]),
    "value too short": (
        _set(("value",), base64.b64encode(b"short").decode()),
        ["the signature does not verify with this public key"],
    ),
    "signer edited": (
        _set(("signed", "signer"), "someone else"),
        ["the signature does not verify with this public key"],
    ),
    "a value JSON cannot hold": (
        _set(("signed", "extra"), float("nan")),
        ["the signed statement holds a value JSON cannot hold"],
    ),
    "signed_at edited": (
        _set(("signed", "signed_at"), "2020-01-01T00:00:00+00:00"),
        ["the signature does not verify with this public key"],
    ),
}


@pytest.mark.parametrize("edit", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_signature_is_reported_not_raised(
    signed: Bundle, keys: SigningKeyPair, edit: tuple[Callable[[Bundle], None], list[str]]
) -> None:
    change, expected = edit
    change(signed)

    report = verify_signed_bundle(json.loads(json.dumps(signed)), keys.public_pem)

    assert not report.ok
    assert reasons(report) == [reason.format(fingerprint=keys.fingerprint) for reason in expected]
    assert set(versions(report)) == {0}


def test_a_fingerprint_edited_to_another_keys_is_reported(
    signed: Bundle, keys: SigningKeyPair, other_keys: SigningKeyPair
) -> None:
    signed["signature"]["public_key_fingerprint"] = other_keys.fingerprint

    assert reasons(verify_signed_bundle(signed, keys.public_pem)) == [
        f"the bundle names signing key {other_keys.fingerprint!r}, not this public key"
        f" {keys.fingerprint}"
    ]


# -- bad key material -----------------------------------------------------------------


def _pem_private(key: Any, encryption: Any = None) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )
    )


def _pem_public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())

BAD_PRIVATE = {
    "not PEM": (b"just some bytes", "it is not a PEM private key"),
    "empty": (b"", "it is not a PEM private key"),
    "a public key": (_pem_public(EC_KEY), "it is a public key; signing needs the private key"),
    "an RSA key": (_pem_private(RSA_KEY), "it is an RSA key, not an Ed25519 one"),
    "an EC key": (_pem_private(EC_KEY), "it is an EC key, not an Ed25519 one"),
    "an encrypted key": (
        _pem_private(
            Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"secret")
        ),
        "it is encrypted; give an unencrypted key",
    ),
}


@pytest.mark.parametrize(("pem", "reason"), BAD_PRIVATE.values(), ids=BAD_PRIVATE.keys())
def test_an_unusable_private_key_is_refused_without_showing_it(
    bundle: Bundle, pem: bytes, reason: str
) -> None:
    with pytest.raises(SigningKeyError) as raised:
        sign_bundle(bundle, pem, at=SIGNED_AT)

    assert (raised.value.role, raised.value.reason) == ("private", reason)
    assert str(raised.value) == f"cannot use this private signing key: {reason}"


BAD_PUBLIC = {
    "not PEM": (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM"),
    "a private key": (_pem_private(Ed25519PrivateKey.generate()), "it is a private key"),
    "an RSA key": (_pem_public(RSA_KEY), "it is an RSA key, not an Ed25519 one"),
}


@pytest.mark.parametrize(("pem", "reason"), BAD_PUBLIC.values(), ids=BAD_PUBLIC.keys())
def test_an_unusable_public_key_is_refused_without_showing_it(
    signed: Bundle, pem: bytes, reason: str
) -> None:
    with pytest.raises(SigningKeyError) as raised:
        verify_signed_bundle(signed, pem)

    assert raised.value.role == "public"
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert body not in str(raised.value)
    with pytest.raises(SigningKeyError):
        public_key_fingerprint(pem)


def test_the_signing_time_is_recorded_in_utc(bundle: Bundle, keys: SigningKeyPair) -> None:
    moment = datetime(2025, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))

    document = sign_bundle(bundle, keys.private_pem, at=moment)

    assert document["signature"]["signed"]["signed_at"] == "2025-06-02T01:30:00+00:00"
    assert datetime.fromisoformat(document["signature"]["signed"]["signed_at"]) == moment
