"""The engine's operators' commands: cancel, pause, resume, retry, skip, and erasure.

Mixed into :class:`~flowledger.engine.engine.WorkflowEngine`. Each is recorded on the
execution with who acted and why (see :mod:`flowledger.engine.operator_commands`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from flowledger.domain.state import ExecutionState
from flowledger.engine.erasure import ErasureReport
from flowledger.engine.ledger import Ledger
from flowledger.engine.operator_commands import OperatorCommands
from flowledger.engine.store_calls import StoreCalls


class OperatorMethods:
    """Operators' commands of a workflow engine."""

    _operator: OperatorCommands
    _store_calls: StoreCalls
    ledger: Ledger
    _command: Callable[..., Awaitable[ExecutionState]]
    """Apply a command and drive the execution on (the engine's)."""

    async def cancel_workflow(
        self,
        execution_id: str,
        reason: str | None = None,
        *,
        actor: str | None = None,
        rollback: bool = False,
    ) -> ExecutionState:
        """Cancel an execution, recording who asked (``actor``) and why (``reason``).

        In-flight steps finish and are recorded, nothing new starts, and the execution
        ends CANCELLED (ROLLED_BACK when ``rollback`` and a completed step declares
        ``compensate``). Without a reason, ``cancelled`` is recorded.

        Raises:
            InvalidTransitionError: The execution had already ended (nothing changes).
            OperatorActionError: The engine is governed and ``actor`` or ``reason`` is
                missing (nothing is recorded).
        """
        command = self._operator.cancel(reason, actor, rollback)
        return await self._command(execution_id, command, take_over=False)

    async def pause_workflow(
        self, execution_id: str, reason: str | None = None, *, actor: str | None = None
    ) -> ExecutionState:
        """Pause: in-flight steps finish and are recorded; nothing new starts until resumed.

        Without a reason, ``requested`` is recorded.

        Raises:
            InvalidTransitionError: The execution is not running.
            OperatorActionError: The engine is governed and ``actor`` or ``reason`` is
                missing (nothing is recorded).
        """
        command = self._operator.pause(reason, actor)
        return await self._command(execution_id, command, take_over=False)

    async def resume_workflow(
        self,
        execution_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> ExecutionState:
        """Resume a paused execution, providing ``inputs`` first (merged into its input).

        Raises:
            InvalidTransitionError: The execution is not paused (nothing is recorded).
            OperatorActionError: The engine is governed and ``actor`` or ``reason`` is
                missing (nothing is recorded).
        """
        return await self._command(execution_id, self._operator.resume(inputs, actor, reason))

    async def retry_workflow(self, execution_id: str, *, actor: str, reason: str) -> ExecutionState:
        """Retry a FAILED execution from its failure, and drive it on.

        The steps that failed it run again at once, each with its whole retry policy;
        the steps the failure cancelled before they ran run as usual; completed steps
        are not repeated. ``ExecutionRetried`` records who retried it and why.

        Raises:
            InvalidTransitionError: The execution is not FAILED (a rolled-back execution
                was undone: start a new one instead).
            OperatorActionError: ``actor`` or ``reason`` is missing.
        """
        return await self._command(execution_id, self._operator.retry(actor, reason))

    async def skip_step(
        self, execution_id: str, step_id: str, *, actor: str, reason: str, output: Any = None
    ) -> ExecutionState:
        """Skip a step that has not completed; the steps after it run.

        The step may be PENDING, PAUSED (waiting for input) or FAILED; skipping the
        step that failed the execution reopens it. ``output`` (JSON data) stands in
        for the step's output: references to the step resolve to it (without one, a
        reference into the output fails the execution, as for any skipped step).
        ``StepSkippedByOperator`` records who skipped it, why, and the output given.

        Raises:
            InvalidTransitionError: The step is running or at rest, the execution has
                ended otherwise, or a cancel was requested.
            OperatorActionError: ``actor`` or ``reason`` is missing, or the step is
                ``non_skippable`` (or a trigger).
        """
        command = self._operator.skip(step_id, actor, reason, output)
        return await self._command(execution_id, command)

    async def forget_subject(self, subject_id: str, actor: str, reason: str) -> ErasureReport:
        """Erase a data subject's personal data (see ``Ledger.forget_subject``)."""
        return await self._store_calls.run(self.ledger.forget_subject, subject_id, actor, reason)
