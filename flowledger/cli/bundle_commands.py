"""Signed bundles on the command line: ``keygen`` and ``verify-bundle``.

Neither command opens a store: ``keygen`` writes a key pair, ``verify-bundle`` checks
a bundle file offline against the signer's public key. ``export --sign`` (in
:mod:`flowledger.cli.audit_commands`) signs. ``verify-bundle`` requires the public key:
its point is proof that the bundle is the history the key's holder signed, and
``import --check`` already verifies the hash chain alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from flowledger.cli.options import EXIT_FAILED, F, read_bundle
from flowledger.cli.rendering import echo_json
from flowledger.engine.audit import VerifyReport
from flowledger.engine.signing import generate_signing_key, verify_signed_bundle

PRIVATE_KEY_MODE = 0o600
"""The private key file's permissions: read and write for its owner only."""
PUBLIC_KEY_MODE = 0o644
"""The public key file's permissions (before the umask): anyone may read it."""

_KEY_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_NEW_FILE = click.Path(dir_okay=False, path_type=Path)


def json_option(command: F) -> F:
    """Add ``--json`` alone (these commands take no ``--store``: they open none)."""
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(command)


@click.command("keygen")
@click.option(
    "--private",
    "private_path",
    type=_NEW_FILE,
    required=True,
    help="Write the private key (PEM, PKCS8, unencrypted, mode 0600) to this new file.",
)
@click.option(
    "--public",
    "public_path",
    type=_NEW_FILE,
    required=True,
    help="Write the public key (PEM) to this new file.",
)
@json_option
def keygen_command(private_path: Path, public_path: Path, as_json: bool) -> int:
    """Write a new Ed25519 key pair for signing bundles (never overwrites a file)."""
    if private_path.resolve() == public_path.resolve():
        raise click.UsageError("--private and --public name the same file")
    for path, option in ((private_path, "--private"), (public_path, "--public")):
        if path.exists():
            raise click.BadParameter(f"{path} exists; not overwritten", param_hint=option)
    pair = generate_signing_key()
    _write_new(private_path, pair.private_pem, PRIVATE_KEY_MODE)
    try:
        _write_new(public_path, pair.public_pem, PUBLIC_KEY_MODE)
    except OSError:
        private_path.unlink()  # half a pair is no use, and a stray secret
        raise
    if as_json:
        echo_json(
            {
                "private": str(private_path),
                "public": str(public_path),
                "public_key_fingerprint": pair.fingerprint,
            }
        )
    else:
        click.echo(f"wrote private key {private_path} (mode 0600; keep it secret)")
        click.echo(f"wrote public key {public_path} (fingerprint {pair.fingerprint})")
    return 0


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` and write ``data``; refuse a file that exists.

    ``O_EXCL`` makes the refusal atomic, and the mode is set at creation, so the
    private key is never readable by others, not even for a moment.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


@click.command("verify-bundle")
@click.argument("file", type=_KEY_FILE)
@click.option(
    "--public-key",
    "public_key_path",
    type=_KEY_FILE,
    required=True,
    metavar="PUBFILE",
    help="The signer's public key (PEM) the signature must verify with.",
)
@json_option
def verify_bundle_command(file: Path, public_key_path: Path, as_json: bool) -> int:
    """Verify a signed bundle offline: its hash chain and its signature."""
    public_key_pem = public_key_path.read_bytes()
    bundle = read_bundle(file)
    report = verify_signed_bundle(bundle, public_key_pem)
    signed = _signed_statement(bundle) if report.ok else None
    if as_json:
        echo_json(report.to_dict() | {"signed": signed})
    else:
        _print_report(file, report, signed)
    return 0 if report.ok else EXIT_FAILED


def _signed_statement(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """What a verified signature states (its shape was checked by the verification)."""
    return dict(bundle["signature"]["signed"])


def _print_report(file: Path, report: VerifyReport, signed: Mapping[str, Any] | None) -> None:
    if signed is not None:
        signer = f" by {signed['signer']}" if signed["signer"] is not None else ""
        click.echo(
            f"{file}: verified; {report.checked} event(s) up to chain head"
            f" {signed['chain_head']}, signed{signer} at {signed['signed_at']}"
        )
        return
    click.echo(f"{file}: NOT verified; {len(report.problems)} problem(s)")
    for problem in report.problems:
        click.echo(f"  version {problem.version}: {problem.reason}")
