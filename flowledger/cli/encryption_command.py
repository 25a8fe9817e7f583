"""``flowledger cipher-key``: print a new key for encryption at rest.

The key alone goes to stdout, so ``FLOWLEDGER_CIPHER_KEY=$(flowledger cipher-key)``
works; keep it in a secret manager. The command opens no store. Keys are never taken
as a command-line option (it would show in ``ps`` and in shell history): commands
read ``FLOWLEDGER_CIPHER_KEY``.
"""

from __future__ import annotations

import click

from flowledger.cli.rendering import echo_json
from flowledger.engine.encryption import CIPHER_KEY_ENV_VAR, GENERATED_KEY_BYTES
from flowledger.engine.encryption import generate_cipher_key as new_key


@click.command("cipher-key")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cipher_key_command(as_json: bool) -> int:
    """Print a new random cipher key (AES-256, base64) for FLOWLEDGER_CIPHER_KEY."""
    key = new_key()
    if as_json:
        echo_json({"cipher_key": key, "bytes": GENERATED_KEY_BYTES, "variable": CIPHER_KEY_ENV_VAR})
    else:
        click.echo(key)
    return 0
