"""``keygen``, ``export --sign`` and ``verify-bundle``: signed bundles end to end."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flowledger.cli.main import run
from flowledger.engine.signing import public_key_fingerprint
from tests.cli.conftest import FAILING
from tests.engine.test_bundles import rehash

Started = Callable[..., dict[str, Any]]
CliJson = Callable[..., tuple[int, Any]]


@dataclass(frozen=True)
class Keys:
    """A key pair ``keygen`` wrote."""

    private: Path
    public: Path
    fingerprint: str


def keygen(cli_json: CliJson, directory: Path, name: str) -> Keys:
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    code, written = cli_json("keygen", "--private", str(private), "--public", str(public))
    assert code == 0
    assert written["private"] == str(private)
    return Keys(private, public, written["public_key_fingerprint"])


@pytest.fixture
def keys(cli_json: CliJson, tmp_path: Path) -> Keys:
    return keygen(cli_json, tmp_path, "signing")


@pytest.fixture
def other_keys(cli_json: CliJson, tmp_path: Path) -> Keys:
    return keygen(cli_json, tmp_path, "other")


@pytest.fixture
def failed(started: Started) -> dict[str, Any]:
    return started(FAILING)


@pytest.fixture
def signed_file(
    failed: dict[str, Any], keys: Keys, store: str, tmp_path: Path, cli_json: CliJson
) -> Path:
    """The failed execution's bundle, exported and signed by ``ops``."""
    target = tmp_path / "signed.json"
    argv = ["export", failed["execution_id"], "--output", str(target), "--store", store]
    code, _ = cli_json(*argv, "--sign", str(keys.private), "--signer", "ops")
    assert code == 0
    return target


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("flowledger: ")
    assert len(captured.err.splitlines()) == 1
    assert "Traceback" not in captured.err
    return captured.err


def edit(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    change(bundle)
    path.write_text(json.dumps(bundle), encoding="utf-8")


class TestKeygen:
    def test_writes_a_pair_with_a_private_file_only_its_owner_can_read(self, keys: Keys) -> None:
        assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600
        assert stat.S_IMODE(keys.public.stat().st_mode) & 0o077 != 0o077
        assert keys.private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert public_key_fingerprint(keys.public.read_bytes()) == keys.fingerprint

    def test_text_output_names_the_files_and_the_fingerprint(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        private, public = tmp_path / "k", tmp_path / "k.pub"
        capsys.readouterr()

        assert run(["keygen", "--private", str(private), "--public", str(public)]) == 0

        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"wrote private key {private} (mode 0600; keep it secret)"
        fingerprint = public_key_fingerprint(public.read_bytes())
        assert out[1] == f"wrote public key {public} (fingerprint {fingerprint})"

    @pytest.mark.parametrize("existing", ["private", "public"])
    def test_refuses_to_overwrite_either_file(
        self, keys: Keys, tmp_path: Path, existing: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        before = keys.private.read_bytes(), keys.public.read_bytes()
        fresh = {"private": tmp_path / "new.pem", "public": tmp_path / "new.pub.pem"}
        fresh[existing] = getattr(keys, existing)
        capsys.readouterr()

        assert (
            run(["keygen", "--private", str(fresh["private"]), "--public", str(fresh["public"])])
            == 2
        )

        assert f"{fresh[existing]} exists; not overwritten" in one_line_error(capsys)
        assert (keys.private.read_bytes(), keys.public.read_bytes()) == before
        assert not any(path.exists() for name, path in fresh.items() if name != existing)

    def test_refuses_one_file_for_both_keys(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "both.pem"
        capsys.readouterr()

        assert run(["keygen", "--private", str(path), "--public", str(path)]) == 2

        assert "--private and --public name the same file" in one_line_error(capsys)
        assert not path.exists()

    def test_a_missing_directory_is_one_line_and_leaves_no_private_key(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        private, public = tmp_path / "k.pem", tmp_path / "missing" / "k.pub.pem"
        capsys.readouterr()

        assert run(["keygen", "--private", str(private), "--public", str(public)]) == 2

        assert "No such file or directory" in one_line_error(capsys)
        assert not private.exists()


class TestExportSigned:
    def test_json_summary_says_signed_with_the_fingerprint(
        self, signed_file: Path, keys: Keys, failed: dict[str, Any]
    ) -> None:
        bundle = json.loads(signed_file.read_text(encoding="utf-8"))
        assert bundle["signature"]["public_key_fingerprint"] == keys.fingerprint
        assert bundle["signature"]["signed"]["signer"] == "ops"
        assert bundle["signature"]["signed"]["events"] == failed["version"]

    def test_json_summary_of_a_signed_export(
        self, failed: dict[str, Any], keys: Keys, store: str, tmp_path: Path, cli_json: CliJson
    ) -> None:
        target = tmp_path / "b.json"
        argv = ["export", failed["execution_id"], "--output", str(target), "--store", store]

        _, unsigned = cli_json(*argv)
        code, summary = cli_json(*argv, "--sign", str(keys.private))

        assert unsigned["signed"] is False
        assert "public_key_fingerprint" not in unsigned
        assert code == 0
        assert summary["signed"] is True
        assert summary["public_key_fingerprint"] == keys.fingerprint
        bundle = json.loads(target.read_text(encoding="utf-8"))
        assert summary["chain_head"] == bundle["signature"]["signed"]["chain_head"]
        assert bundle["signature"]["signed"]["signer"] is None

    def test_text_output_names_signer_and_key(
        self,
        failed: dict[str, Any],
        keys: Keys,
        store: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        target = tmp_path / "b.json"
        capsys.readouterr()
        argv = ["export", failed["execution_id"], "--output", str(target), "--store", store]

        assert run([*argv, "--sign", str(keys.private), "--signer", "ops team"]) == 0

        out = capsys.readouterr().out.splitlines()
        assert out[1] == f"signed by ops team with key {keys.fingerprint}"

    def test_signed_bundle_on_standard_output(
        self, failed: dict[str, Any], keys: Keys, store: str, cli_json: CliJson
    ) -> None:
        code, bundle = cli_json(
            "export", failed["execution_id"], "--store", store, "--sign", str(keys.private)
        )

        assert code == 0
        assert bundle["signature"]["algorithm"] == "Ed25519"

    def test_signer_without_a_key_is_bad_usage(
        self, failed: dict[str, Any], store: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()

        assert run(["export", failed["execution_id"], "--store", store, "--signer", "x"]) == 2

        assert "--signer needs --sign KEYFILE" in one_line_error(capsys)

    @pytest.mark.parametrize("which", ["not pem", "public key", "rsa key"])
    def test_an_unusable_key_is_one_line_without_its_bytes(
        self,
        failed: dict[str, Any],
        keys: Keys,
        store: str,
        tmp_path: Path,
        which: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        content = {
            "not pem": b"hunter2-secret-material",
            "public key": keys.public.read_bytes(),
            "rsa key": rsa_pem,
        }[which]
        key_file = tmp_path / "bad.pem"
        key_file.write_bytes(content)
        target = tmp_path / "never.json"
        capsys.readouterr()

        argv = ["export", failed["execution_id"], "--store", store, "--output", str(target)]
        code = run([*argv, "--sign", str(key_file)])

        assert code == 2
        err = one_line_error(capsys)
        assert err.startswith("flowledger: cannot use this private signing key: it is ")
        assert "hunter2" not in err
        assert all(line.decode() not in err for line in content.splitlines()[1:-1])
        assert not target.exists()

    def test_a_missing_key_file_is_bad_input(
        self, failed: dict[str, Any], store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        missing = tmp_path / "nope.pem"

        assert (
            run(["export", failed["execution_id"], "--store", store, "--sign", str(missing)]) == 2
        )

        assert "nope.pem" in one_line_error(capsys)


class TestVerifyBundle:
    def test_a_signed_bundle_verifies(
        self,
        signed_file: Path,
        keys: Keys,
        failed: dict[str, Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        capsys.readouterr()

        assert run(["verify-bundle", str(signed_file), "--public-key", str(keys.public)]) == 0

        out = capsys.readouterr().out
        head = json.loads(signed_file.read_text(encoding="utf-8"))["chain_head"]
        assert out.startswith(
            f"{signed_file}: verified; {failed['version']} event(s) up to chain head {head},"
            " signed by ops at "
        )

    def test_json_report_of_a_verified_bundle(
        self, signed_file: Path, keys: Keys, cli_json: CliJson
    ) -> None:
        code, report = cli_json("verify-bundle", str(signed_file), "--public-key", str(keys.public))

        assert code == 0
        assert (report["ok"], report["problems"], report["executions"]) == (True, [], 1)
        assert report["signed"]["signer"] == "ops"
        assert report["signed"]["signed_at"].endswith("+00:00")

    def test_text_output_without_a_signer(
        self,
        failed: dict[str, Any],
        keys: Keys,
        store: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        target = tmp_path / "anonymous.json"
        argv = ["export", failed["execution_id"], "--output", str(target), "--store", store]
        assert run([*argv, "--sign", str(keys.private)]) == 0
        capsys.readouterr()

        assert run(["verify-bundle", str(target), "--public-key", str(keys.public)]) == 0

        assert ", signed at " in capsys.readouterr().out

    def test_an_edited_event_fails_with_its_version(
        self, signed_file: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
    ) -> None:
        edit(signed_file, lambda bundle: bundle["events"][0]["data"]["input"].update(x=1))
        capsys.readouterr()

        assert run(["verify-bundle", str(signed_file), "--public-key", str(keys.public)]) == 1

        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"{signed_file}: NOT verified; 1 problem(s)"
        assert out[1].startswith("  version 1: ")

    def test_a_rewritten_history_fails_the_signature(
        self, signed_file: Path, keys: Keys, cli_json: CliJson
    ) -> None:
        def forge(bundle: dict[str, Any]) -> None:
            bundle["events"][0]["data"]["input"] = {"forged": True}
            rehash(bundle)

        edit(signed_file, forge)

        code, report = cli_json("verify-bundle", str(signed_file), "--public-key", str(keys.public))

        assert code == 1
        assert report["signed"] is None
        assert [problem["version"] for problem in report["problems"]] == [0]
        assert report["problems"][0]["reason"].startswith("signed chain head ")
        assert code_of_import(signed_file) == 0  # the chain alone cannot tell

    def test_another_key_fails(
        self, signed_file: Path, other_keys: Keys, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()

        assert run(["verify-bundle", str(signed_file), "--public-key", str(other_keys.public)]) == 1

        assert "  version 0: the signature does not verify with this public key" in (
            capsys.readouterr().out.splitlines()
        )

    def test_an_unsigned_bundle_fails(
        self,
        failed: dict[str, Any],
        keys: Keys,
        store: str,
        tmp_path: Path,
        cli_json: CliJson,
    ) -> None:
        target = tmp_path / "plain.json"
        cli_json("export", failed["execution_id"], "--output", str(target), "--store", store)

        code, report = cli_json("verify-bundle", str(target), "--public-key", str(keys.public))

        assert code == 1
        assert [problem["reason"] for problem in report["problems"]] == ["the bundle is not signed"]

    def test_a_malformed_signature_is_reported_not_raised(
        self, signed_file: Path, keys: Keys, cli_json: CliJson
    ) -> None:
        edit(signed_file, lambda bundle: bundle["signature"].update(signed="oops", value=3))

        code, report = cli_json("verify-bundle", str(signed_file), "--public-key", str(keys.public))

        assert code == 1
        assert [problem["reason"] for problem in report["problems"]] == [
            "the signature's signed statement is a string"
        ]

    def test_the_public_key_is_required(
        self, signed_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()

        assert run(["verify-bundle", str(signed_file)]) == 2

        assert "--public-key" in one_line_error(capsys)

    @pytest.mark.parametrize("which", ["missing", "not json", "not utf-8"])
    def test_an_unreadable_bundle_is_bad_input(
        self, keys: Keys, tmp_path: Path, which: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "bundle.json"
        if which == "not json":
            path.write_text("{not json", encoding="utf-8")
        elif which == "not utf-8":
            path.write_bytes(b"\xff\xfe\x00")
        capsys.readouterr()

        assert run(["verify-bundle", str(path), "--public-key", str(keys.public)]) == 2

        assert str(path) in one_line_error(capsys)

    def test_a_private_key_given_as_public_is_bad_input_without_its_bytes(
        self, signed_file: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()

        assert run(["verify-bundle", str(signed_file), "--public-key", str(keys.private)]) == 2

        err = one_line_error(capsys)
        assert "cannot use this public signing key: it is a private key" in err
        assert keys.private.read_text().splitlines()[1] not in err

    def test_opens_no_store(
        self,
        signed_file: Path,
        keys: Keys,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        never = tmp_path / "never.db"
        monkeypatch.setenv("FLOWLEDGER_STORE", f"sqlite:///{never}")
        argv = ["verify-bundle", str(signed_file), "--public-key", str(keys.public)]

        assert run(argv) == 0
        assert run([*argv, "--store", f"sqlite:///{never}"]) == 2

        assert "No such option '--store'" in capsys.readouterr().err
        assert not never.exists()


def code_of_import(path: Path) -> int:
    return run(["import", str(path), "--check"])


def test_a_signed_bundle_imports_into_another_store(
    signed_file: Path, tmp_path: Path, cli_json: CliJson
) -> None:
    archive = f"sqlite:///{tmp_path}/archive.db"

    code, imported = cli_json("import", str(signed_file), "--store", archive)

    assert code == 0
    bundle = json.loads(signed_file.read_text(encoding="utf-8"))
    assert imported == {"imported": bundle["execution_id"], "events": len(bundle["events"])}
    code, report = cli_json("verify", bundle["execution_id"], "--store", archive)
    assert (code, report["ok"]) == (0, True)


def test_the_new_commands_are_listed_after_export_and_import(
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()

    assert run(["--help"]) == 0

    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:2] == "  "]
    assert names[names.index("export") :][:4] == ["export", "import", "verify-bundle", "keygen"]
