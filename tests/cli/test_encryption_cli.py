"""Encryption at rest on the command line: ``cipher-key``, and FLOWLEDGER_CIPHER_KEY."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowledger.cli.encryption_command import cipher_key_command
from flowledger.cli.main import cli, run
from flowledger.engine.encryption import CIPHER_KEY_ENV_VAR
from tests.cli.conftest import GREETING

SECRET = "customer-secret-4242"


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """Register ``cipher-key`` for the test if ``main`` does not (yet) list it."""
    added = cli.commands.get("cipher-key") is None
    if added:
        cli.add_command(cipher_key_command)
    yield
    if added:
        cli.commands.pop("cipher-key")


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A key made by ``flowledger cipher-key``, set in FLOWLEDGER_CIPHER_KEY."""
    capsys.readouterr()
    assert run(["cipher-key"]) == 0
    made = capsys.readouterr().out.strip()
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, made)
    return made


@pytest.fixture
def recorded(key: str, store: str, started: Callable[..., dict[str, Any]], tmp_path: Path) -> str:
    """A greeting of SECRET run through ``flowledger run`` into an encrypted store."""
    state = started(GREETING, "--input", json.dumps({"name": SECRET}))
    assert state["status"] == "COMPLETED"
    assert SECRET.encode() not in (tmp_path / "cli.db").read_bytes()
    return str(state["execution_id"])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_cipher_key_prints_a_fresh_32_byte_key(capsys: pytest.CaptureFixture[str]) -> None:
    keys = []
    for _ in range(2):
        assert run(["cipher-key"]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        keys.append(out.strip())
    assert keys[0] != keys[1]
    assert all(len(base64.b64decode(key, validate=True)) == 32 for key in keys)


def test_cipher_key_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["cipher-key", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["variable"] == CIPHER_KEY_ENV_VAR
    assert len(base64.b64decode(document["cipher_key"], validate=True)) == 32


def test_commands_read_the_key_from_the_environment(
    recorded: str, store: str, cli_json: Callable[..., tuple[int, Any]]
) -> None:
    code, history = cli_json("history", recorded, "--store", store)
    assert code == 0
    assert history[0]["data"]["input"] == {"name": SECRET}
    code, report = cli_json("verify", "--store", store)
    assert (code, report["ok"]) == (0, True)
    code, listed = cli_json("list", "--store", store)
    assert (code, [state["execution_id"] for state in listed]) == (0, [recorded])


@pytest.mark.parametrize("command", ["history", "show", "verify", "list", "export"])
def test_a_wrong_key_is_one_line_and_exit_2(
    command: str,
    recorded: str,
    key: str,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = base64.b64encode(bytes(32)).decode()
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, wrong)
    argv = [command, recorded] if command in {"history", "show", "export"} else [command]
    capsys.readouterr()
    assert run([*argv, "--store", store]) == 2
    err = one_error_line(capsys)
    assert err.startswith("flowledger: store ")
    assert "the key is wrong, or the store was written with another key" in err
    assert wrong not in err
    assert key not in err
    assert SECRET not in err


def test_no_key_for_an_encrypted_store_is_one_line_and_exit_2(
    recorded: str,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(CIPHER_KEY_ENV_VAR)
    capsys.readouterr()
    assert run(["history", recorded, "--store", store]) == 2
    assert f"set {CIPHER_KEY_ENV_VAR}" in one_error_line(capsys)


def test_a_malformed_key_is_one_line_and_exit_2(
    recorded: str,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(CIPHER_KEY_ENV_VAR, "hunter2-is-not-a-key")
    capsys.readouterr()
    assert run(["list", "--store", store]) == 2
    err = one_error_line(capsys)
    assert f"invalid cipher key in {CIPHER_KEY_ENV_VAR}" in err
    assert "hunter2" not in err
