"""Events recorded before a field was added still read, verify, export and import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowledger import Ledger
from flowledger.domain.chain import NOT_HASHED, event_hash
from flowledger.domain.definition import load_definition
from flowledger.domain.events import ExecutionResumed
from flowledger.domain.execution import Execution
from flowledger.engine.ledger_app import LedgerApplication

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def paused_and_resumed_as_recorded_before_reasons(url: str) -> str:
    """Store an execution whose ``ExecutionResumed`` has no ``reason``, as older ones had."""
    definition = load_definition({"id": "wf", "steps": [{"id": "a", "action": "noop"}]})
    execution = Execution.start("old-resume", definition, {}, T0)
    execution.pause("requested", T0 + timedelta(seconds=1), actor="ann")
    execution.resume("ann", T0 + timedelta(seconds=2))
    (*_, resumed) = execution.pending_events
    assert isinstance(resumed, ExecutionResumed)
    # The record as an older version wrote it: no field, and a hash taken without it.
    vars(resumed).pop("reason")
    data = {key: value for key, value in vars(resumed).items() if key not in NOT_HASHED}
    vars(resumed)["hash"] = event_hash(
        resumed.prev_hash,
        "ExecutionResumed",
        str(resumed.originator_id),
        3,
        resumed.timestamp,
        data,
    )
    application = LedgerApplication(url)
    try:
        application.save(execution)
    finally:
        application.close()
    return execution.execution_id


def test_an_older_resume_without_a_reason_reads_verifies_exports_and_imports(
    tmp_path: Path,
) -> None:
    execution_id = paused_and_resumed_as_recorded_before_reasons(f"sqlite:///{tmp_path}/old.db")

    with Ledger(f"sqlite:///{tmp_path}/old.db") as ledger:
        history = ledger.history(execution_id)
        assert history[-1].type == "ExecutionResumed"
        assert "reason" not in history[-1].data
        assert ledger.verify(execution_id).ok
        assert ledger.get(execution_id).status.value == "RUNNING"
        bundle = ledger.export(execution_id)

    with Ledger(f"sqlite:///{tmp_path}/imported.db") as other:
        assert other.import_bundle(bundle) == execution_id
        assert other.verify(execution_id).ok
        assert other.timeline(execution_id)[-1].text == "execution resumed by ann"


def test_a_resume_with_a_reason_records_and_hashes_it(tmp_path: Path) -> None:
    definition = load_definition({"id": "wf", "steps": [{"id": "a", "action": "noop"}]})
    execution = Execution.start("new-resume", definition, {}, T0)
    execution.pause("requested", T0, actor="ann")
    execution.resume("bob", T0, reason="audit done")
    application = LedgerApplication(f"sqlite:///{tmp_path}/new.db")
    application.save(execution)
    application.close()

    with Ledger(f"sqlite:///{tmp_path}/new.db") as ledger:
        assert ledger.history("new-resume")[-1].data["reason"] == "audit done"
        assert ledger.verify("new-resume").ok
