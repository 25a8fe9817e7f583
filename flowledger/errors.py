"""The whole flowledger exception hierarchy.

Every error the package raises derives from :class:`FlowledgerError` and carries its
details as read-only, structured fields, so callers never match on message text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class FlowledgerError(Exception):
    """Base class of every error raised by flowledger."""


@dataclass(frozen=True)
class DefinitionProblem:
    """One problem found in a workflow definition.

    Attributes:
        path: JSON path of the offending value, for example ``$.steps[2].retry``.
        message: What is wrong, in a sentence an author can act on.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DefinitionError(FlowledgerError):
    """A workflow definition is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: Iterable[DefinitionProblem]) -> None:
        self.errors: tuple[DefinitionProblem, ...] = tuple(errors)
        count = len(self.errors)
        listing = "; ".join(str(problem) for problem in self.errors)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid workflow definition ({count} {noun}): {listing}")


class MissingInputError(FlowledgerError):
    """A reference names a value that is not there at run time.

    The engine pauses the execution instead of failing it; providing the value
    (``resume_workflow(id, inputs=...)``) continues it.
    """

    def __init__(self, missing_var: str, detail: str = "") -> None:
        self.missing_var = missing_var
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"missing value for ${{{missing_var}}}{suffix}")


class UnavailableOutputError(FlowledgerError):
    """A step's parameters reference a step result that does not exist.

    Unlike a missing input, it cannot be provided on resume: the referenced step was
    skipped, failed, or returned no such value. The execution fails, naming both.

    Attributes:
        step_id: The step whose parameters hold the reference.
        missing_var: The reference, for example ``fetch.output.total``.
    """

    def __init__(self, step_id: str, missing_var: str) -> None:
        self.step_id = step_id
        self.missing_var = missing_var
        super().__init__(
            f"step {step_id!r} references ${{{missing_var}}}, which does not exist: the"
            " step it names was skipped or failed, or its output has no such value"
        )


class SchemaValidationError(FlowledgerError):
    """A step's input or output does not match its JSON Schema. Never retried.

    Attributes:
        schema_type: ``"input"`` or ``"output"``.
        errors: Each violation as ``{"path": json_path, "message": text}``.
    """

    def __init__(
        self, schema_type: str, errors: Iterable[dict[str, str]], step_id: str | None = None
    ) -> None:
        self.schema_type = schema_type
        self.errors: tuple[dict[str, str], ...] = tuple(errors)
        self.step_id = step_id
        where = f" of step {step_id!r}" if step_id else ""
        listing = "; ".join(f"{e['path']}: {e['message']}" for e in self.errors)
        super().__init__(f"{schema_type}{where} does not match its schema: {listing}")


class StepTimeoutError(FlowledgerError):
    """A step ran longer than its ``timeout`` (seconds)."""

    def __init__(self, step_id: str, timeout: float) -> None:
        self.step_id = step_id
        self.timeout = timeout
        super().__init__(f"step {step_id!r} timed out after {timeout:g} s")


class ConditionError(FlowledgerError):
    """A condition could not be evaluated at run time.

    A misconfigured condition fails the execution loudly; it never looks like a branch
    not taken.

    Attributes:
        expression: The condition's text.
        source: Step the connection leaves (None for a step's own guard).
        target: Step the condition guards.
        reason: Why the evaluation failed.
    """

    def __init__(
        self, expression: str, reason: str, source: str | None = None, target: str | None = None
    ) -> None:
        self.expression = expression
        self.reason = reason
        self.source = source
        self.target = target
        where = f"{source} -> {target}" if source else f"step {target}"
        super().__init__(f"condition {expression!r} on {where} failed: {reason}")


class InvalidTransitionError(FlowledgerError):
    """A command is not allowed in the current state; nothing was recorded.

    Attributes:
        entity: ``"execution"`` or ``"step"``.
        state: The current state.
        trigger: The refused trigger.
        subject: The execution or step id, where known.
    """

    def __init__(self, entity: str, state: str, trigger: str, subject: str | None = None) -> None:
        self.entity = entity
        self.state = state
        self.trigger = trigger
        self.subject = subject
        name = f" {subject!r}" if subject else ""
        super().__init__(f"cannot {trigger} {entity}{name} in state {state}")


class OperatorActionError(FlowledgerError):
    """An operator's command was refused before anything was recorded.

    Raised when a governed command lacks its actor or reason, or when a step may not
    be skipped (``non_skippable``, or a trigger).

    Attributes:
        action: The command (``"cancel"``, ``"pause"``, ``"resume"``, ``"retry"``,
            ``"skip"``).
        reason: Why it was refused.
    """

    def __init__(self, action: str, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"cannot {action}: {reason}")


class SubjectForgottenError(FlowledgerError):
    """A data subject whose personal data was erased is named again; nothing is recorded.

    Its key is destroyed for good, so its personal data can never be recorded again:
    give the person a new subject id.

    Attributes:
        subject_key: The id of the destroyed key (never the subject's own id).
    """

    def __init__(self, subject_key: str) -> None:
        self.subject_key = subject_key
        super().__init__(
            f"the data subject with key {subject_key} was forgotten: its personal data"
            " cannot be recorded again (give it a new subject id)"
        )


class ExecutionNotFoundError(FlowledgerError):
    """No execution with this id is in the ledger."""

    def __init__(self, execution_id: Any) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id} not found")


class NonRetryableError(FlowledgerError):
    """Raised by an action to fail its step at once, without retries."""

    def __init__(self, message: str = "", *, error_type: str | None = None) -> None:
        self.error_type = error_type or type(self).__name__
        super().__init__(message)


class ChainError(FlowledgerError):
    """A stored history does not verify against its hash chain.

    Attributes:
        version: The first event whose link is broken.
        reason: What did not match.
    """

    def __init__(self, version: int, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(f"hash chain broken at event {version}: {reason}")


class ImportConflictError(FlowledgerError):
    """An imported history differs from the one the store holds under the same id.

    Nothing of the import is stored.

    Attributes:
        execution_id: The execution both histories claim.
        version: The first event at which they differ.
    """

    def __init__(self, execution_id: str, version: int, reason: str) -> None:
        self.execution_id = execution_id
        self.version = version
        super().__init__(f"cannot import execution {execution_id!r}: {reason}")


class UnknownActionError(FlowledgerError):
    """A step names an action that is not registered. Never retried.

    Attributes:
        action: The name that was looked up.
        registered: The registered names, sorted.
    """

    def __init__(self, action: str, registered: Iterable[str]) -> None:
        self.action = action
        self.registered: tuple[str, ...] = tuple(sorted(registered))
        close = difflib.get_close_matches(action, self.registered, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listing = ", ".join(self.registered) if self.registered else "none"
        super().__init__(f"unknown action {action!r}{hint}; registered actions: {listing}")


class ActionRegistrationError(FlowledgerError):
    """An action cannot be registered under this name.

    Attributes:
        action: The name given.
        reason: Why it was refused (taken by another function, not callable, ...).
    """

    def __init__(self, action: object, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"cannot register action {action!r}: {reason}")


class IntentionalFailureError(FlowledgerError):
    """The retryable error raised by the built-in ``fail`` action."""


class ActionSignatureError(FlowledgerError):
    """A step's parameters do not fit its action's signature. Never retried.

    A definition or action bug: the same parameters would fail the same way again.

    Attributes:
        action: The action's name.
        unexpected: Parameters the action does not accept.
        missing: Required parameters that were not given.
    """

    def __init__(
        self, action: str, unexpected: tuple[str, ...], missing: tuple[str, ...], detail: str
    ) -> None:
        self.action = action
        self.unexpected = unexpected
        self.missing = missing
        parts = []
        if unexpected:
            parts.append(f"unexpected parameter(s) {', '.join(unexpected)}")
        if missing:
            parts.append(f"missing required parameter(s) {', '.join(missing)}")
        super().__init__(f"parameters do not fit action {action}: {'; '.join(parts) or detail}")


class OutputNotSerializableError(FlowledgerError):
    """An action returned something JSON cannot represent. Never retried.

    Attributes:
        step_id: The step whose action returned it.
        path: JSON path of the offending value within the output.
        kind: Its Python type name (or what is wrong with it).
    """

    def __init__(self, step_id: str, path: str, kind: str) -> None:
        self.step_id = step_id
        self.path = path
        self.kind = kind
        super().__init__(f"output of step {step_id!r} is not JSON: {path} is {kind}")


class StoreError(FlowledgerError):
    """A store URL is invalid, or the store it names cannot be opened.

    Attributes:
        url: The URL, with its password masked (callers mask it before raising).
        reason: What is wrong.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"store {self.url!r}: {reason}")


class CipherKeyError(FlowledgerError):
    """A cipher key is malformed, or does not decrypt the events a store holds.

    Not a :class:`StoreError`: waiting and retrying never helps. The message never
    holds the key.

    Attributes:
        source: Where the key came from (``"cipher_key"`` or
            ``"FLOWLEDGER_CIPHER_KEY"``), or None when no key was given.
        reason: What is wrong, and what to do about it.
        store: The store's URL (password masked), when the key was tried on a store.
    """

    def __init__(self, source: str | None, reason: str, store: str | None = None) -> None:
        self.source = source
        self.reason = reason
        self.store = store
        where = f"store {store!r}: " if store else ""
        super().__init__(f"{where}{reason}")


class ConcurrencyConflictError(FlowledgerError):
    """Another writer recorded events of an execution first; nothing was recorded.

    The aggregates' pending events were already taken: load the executions again and
    re-run the commands.

    Attributes:
        execution_ids: The executions in the refused save (for bare events other than
            the first, their aggregate ids).
    """

    def __init__(self, execution_ids: Iterable[str]) -> None:
        self.execution_ids = tuple(execution_ids)
        listing = ", ".join(repr(execution_id) for execution_id in self.execution_ids)
        super().__init__(
            f"another writer recorded events of {listing or 'these executions'} first; "
            "nothing of this save was recorded (load them again and retry)"
        )


class VersionNotFoundError(FlowledgerError):
    """The execution exists, but its history has no such version or moment.

    Attributes:
        execution_id: The execution.
        requested: The version (int) or moment (datetime) asked for.
        latest: The execution's current version.
    """

    def __init__(
        self, execution_id: str, requested: int | datetime, latest: int, detail: str
    ) -> None:
        self.execution_id = execution_id
        self.requested = requested
        self.latest = latest
        super().__init__(f"execution {execution_id!r} {detail}")


class CorruptRecordError(FlowledgerError):
    """A stored event cannot be read back: the store was damaged or tampered with.

    ``Ledger.verify`` reports such records instead of raising.

    Attributes:
        execution_id: The execution's id, or its aggregate id when that is all there is.
        version: The record's version, where known.
        reason: What could not be read.
    """

    def __init__(self, execution_id: str, version: int | None, reason: str) -> None:
        self.execution_id = execution_id
        self.version = version
        self.reason = reason
        where = "" if version is None else f" at version {version}"
        super().__init__(
            f"stored history of execution {execution_id}{where} is unreadable: {reason}"
        )


class SigningKeyError(FlowledgerError):
    """Key material given to sign or verify a bundle cannot be used.

    The message never holds the key's bytes.

    Attributes:
        role: ``"private"`` (signing) or ``"public"`` (verifying).
        reason: What is wrong with it (not PEM, another key type, encrypted, ...).
    """

    def __init__(self, role: str, reason: str) -> None:
        self.role = role
        self.reason = reason
        super().__init__(f"cannot use this {role} signing key: {reason}")
