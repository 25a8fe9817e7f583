"""The public names outside code is written against (pinned so none disappears)."""

from __future__ import annotations

import base64

import flowledger
from flowledger import errors

CONTRACT_NAMES = {
    "WorkflowEngine",
    "Ledger",
    "ActionRegistry",
    "load_definition",
    "WorkflowDefinition",
    "ExecutionState",
    "StepState",
    "ExecutionStatus",
    "StepStatus",
    "HistoryEntry",
    "FlowledgerError",
    "DefinitionError",
    "MissingInputError",
    "SchemaValidationError",
    "StepTimeoutError",
    "ConditionError",
    "InvalidTransitionError",
    "ExecutionNotFoundError",
    "NonRetryableError",
}


def test_every_contract_name_is_exported() -> None:
    assert CONTRACT_NAMES.issubset(flowledger.__all__)
    for name in flowledger.__all__:
        assert getattr(flowledger, name) is not None


def test_every_error_derives_from_flowledger_error() -> None:
    classes = [value for value in vars(errors).values() if isinstance(value, type)]
    exceptions = [cls for cls in classes if issubclass(cls, Exception)]
    assert len(exceptions) >= 10
    assert all(issubclass(cls, flowledger.FlowledgerError) for cls in exceptions)


def test_statuses_are_string_enums() -> None:
    assert flowledger.ExecutionStatus.COMPLETED == "COMPLETED"
    assert flowledger.StepStatus.ROLLED_BACK == "ROLLED_BACK"
    assert {status.value for status in flowledger.ExecutionStatus} == {
        "PENDING",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "ROLLING_BACK",
        "ROLLED_BACK",
        "ROLLBACK_FAILED",
    }


def test_error_fields_are_structured() -> None:
    missing = flowledger.MissingInputError("input.customer.name")
    assert missing.missing_var == "input.customer.name"
    timeout = flowledger.StepTimeoutError("charge", 2.5)
    assert (timeout.step_id, timeout.timeout) == ("charge", 2.5)
    schema = flowledger.SchemaValidationError("output", [{"path": "$.a", "message": "bad"}])
    assert schema.schema_type == "output"
    assert schema.errors == ({"path": "$.a", "message": "bad"},)
    key = flowledger.SigningKeyError("public", "it is not a PEM public key")
    assert (key.role, key.reason) == ("public", "it is not a PEM public key")
    refused = flowledger.OperatorActionError("skip", "step 'pay' is non_skippable")
    assert (refused.action, refused.reason) == ("skip", "step 'pay' is non_skippable")
    assert flowledger.SubjectForgottenError("subject:ab12").subject_key == "subject:ab12"
    cipher = flowledger.CipherKeyError("cipher_key", "invalid cipher key in cipher_key: empty")
    assert (cipher.source, cipher.reason, cipher.store) == (
        "cipher_key",
        "invalid cipher key in cipher_key: empty",
        None,
    )


def test_a_generated_cipher_key_is_32_bytes_of_base64() -> None:
    key = flowledger.generate_cipher_key()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert flowledger.generate_cipher_key() != key
