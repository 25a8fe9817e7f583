"""Export bundles: verified offline, imported into another SQLite file, tampered with."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowledger import ExecutionStatus, WorkflowEngine
from flowledger.domain.canonical import canonical_json, encode_payload, sha256_hex
from flowledger.domain.chain import GENESIS, event_hash
from flowledger.domain.event_catalogue import EVENT_CLASSES
from flowledger.domain.events import ExecutionStarted
from flowledger.domain.execution import Execution, execution_uuid
from flowledger.engine.audit import entry_json
from flowledger.engine.bundle_events import BUNDLE_KEYS, EXECUTION_TOPIC
from flowledger.engine.bundles import import_bundle, verify_bundle
from flowledger.engine.ledger import Ledger
from flowledger.engine.ledger_app import SHORT_EXECUTION, LedgerApplication
from flowledger.errors import ChainError, CorruptRecordError, ImportConflictError
from tests.domain.factories import at, chain_definition
from tests.projections.test_timeline import completed, every_event_type, retried_and_failed
from tests.unit.conftest import WAIT, step, workflow

Bundle = dict[str, Any]


def exported(url: str, *executions: Execution) -> list[Bundle]:
    """Record executions in a SQLite file and export each, through JSON."""
    with LedgerApplication(url) as app:
        app.save(*executions)
    with Ledger(url) as ledger:
        return [
            json.loads(json.dumps(ledger.export(execution.execution_id)))
            for execution in executions
        ]


@pytest.fixture
def source(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/source.db"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LedgerApplication]:
    """The importing store: an application with no engine and no actions."""
    with LedgerApplication(f"sqlite:///{tmp_path}/target.db") as app:
        yield app


@pytest.fixture
def bundle(source: str) -> Bundle:
    """The 14-event bundle of :func:`retried_and_failed`, through JSON."""
    (found,) = exported(source, retried_and_failed())
    return found


def rehash(bundle: Bundle) -> Bundle:
    """Re-link every event as a forger would: what a chain hashes, spelled out.

    Each hash covers the previous hash, the event's type, its aggregate id (derived
    from the execution id), version and timestamp, and its fields with payloads as
    canonical JSON text (the first event's also the aggregate's topic).
    """
    originator_id = str(execution_uuid(bundle["execution_id"]))
    previous = GENESIS
    for version, entry in enumerate(bundle["events"], start=1):
        cls = EVENT_CLASSES[entry["type"]]
        data = {
            name: encode_payload(value) if name in cls.PAYLOADS else value
            for name, value in entry["data"].items()
        }
        if cls is ExecutionStarted:
            data["originator_topic"] = EXECUTION_TOPIC
        moment = datetime.fromisoformat(entry["timestamp"])
        digest = event_hash(
            previous, entry["type"], originator_id, version, moment, {"prev_hash": previous, **data}
        )
        entry.update(version=version, prev_hash=previous, hash=digest)
        previous = digest
    bundle["chain_head"] = previous
    return bundle


def problems(report_of: Any) -> list[tuple[int, str]]:
    return [(problem.version, problem.reason) for problem in report_of.problems]


# -- a real execution travels from one SQLite file to another -------------------------


@pytest.fixture
async def recorded_run(source: str) -> AsyncIterator[str]:
    """A retried, conditional, paused and resumed execution recorded by the engine."""
    calls: list[int] = []
    async with WorkflowEngine(store=source) as engine:

        @engine.action("flaky")
        async def flaky(name: str) -> dict[str, Any]:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("first try refused")
            return {"name": name, "ratio": 0.1, "items": [1, 2.5, None, True], "é": "✓"}

        definition = workflow(
            step(
                "fetch",
                "flaky",
                parameters={"name": "${input.name}"},
                retry={"max_attempts": 2, "initial_interval": 0.01, "jitter": 0},
            ),
            step("big", depends_on=[{"step": "fetch", "condition": "output.ratio > 1"}]),
            step("small", depends_on=[{"step": "fetch", "condition": "output.ratio <= 1"}]),
            step("finish", depends_on=["small"], parameters={"x": "${input.x}"}),
        )
        nasty = {"_type_": "datetime_iso", "_data_": "not a date"}
        execution_id = await engine.start_workflow(
            definition, {"name": "Zoë", "nasty": nasty}, execution_id="order 42"
        )
        assert (await engine.wait_for(execution_id, WAIT)).status is ExecutionStatus.PAUSED
        await engine.resume_workflow(execution_id, inputs={"x": 1}, actor="bob")
        assert (await engine.wait_for(execution_id, WAIT)).status is ExecutionStatus.COMPLETED
    engine.close()
    yield execution_id


async def test_an_exported_run_imports_into_another_file_and_replays_without_actions(
    source: str, target: LedgerApplication, recorded_run: str
) -> None:
    with Ledger(source) as ledger:
        sent = json.dumps(ledger.export(recorded_run))
        history, state = ledger.history(recorded_run), ledger.get(recorded_run)
    received = json.loads(sent)
    assert verify_bundle(received).ok

    assert import_bundle(target, received) == recorded_run

    imported = Ledger(application=target)
    assert imported.verify(recorded_run).ok
    assert imported.history(recorded_run) == history
    assert [entry_json(entry) for entry in imported.history(recorded_run)] == received["events"]
    assert imported.get(recorded_run) == state
    with Ledger(source) as ledger:
        for version in range(1, state.version + 1):
            assert imported.get(recorded_run, version=version) == ledger.get(
                recorded_run, version=version
            )
    assert imported.export(recorded_run) == received
    assert [found.execution_id for found in imported.list()] == [recorded_run]


def test_every_event_type_survives_export_and_import(
    source: str, target: LedgerApplication
) -> None:
    bundles = exported(source, *every_event_type())

    for sent in bundles:
        execution_id = import_bundle(target, sent)
        assert Ledger(application=target).export(execution_id) == sent
    assert Ledger(application=target).verify().ok
    assert {entry["type"] for sent in bundles for entry in sent["events"]} == set(EVENT_CLASSES)


def test_a_long_history_imports_and_replays(source: str, target: LedgerApplication) -> None:
    steps = tuple(f"s{n}" for n in range(SHORT_EXECUTION))
    execution = Execution.start("long", chain_definition(*steps), {}, at(0))
    for n, step_id in enumerate(steps):
        execution.start_step(step_id, {"n": n}, at(2 * n + 1))
        execution.complete_step(step_id, {"n": n}, 1, at(2 * n + 2))
    execution.complete({}, at(100))
    (sent,) = exported(source, execution)

    import_bundle(target, sent)

    with Ledger(source) as ledger:
        assert Ledger(application=target).get("long") == ledger.get("long")


def test_importing_the_same_bundle_again_stores_nothing_new(
    bundle: Bundle, target: LedgerApplication
) -> None:
    assert import_bundle(target, bundle) == "ex"
    stored = list(target.stored_records(execution_uuid("ex")))

    assert import_bundle(target, copy.deepcopy(bundle)) == "ex"

    assert list(target.stored_records(execution_uuid("ex"))) == stored
    assert Ledger(application=target).verify().ok


def test_a_different_history_under_an_existing_id_is_refused(
    bundle: Bundle, target: LedgerApplication
) -> None:
    other = completed("ex")
    target.save(other)
    before = Ledger(application=target).history("ex")

    with pytest.raises(ImportConflictError, match="already holds a different history") as refused:
        import_bundle(target, bundle)

    assert refused.value.version == 1
    assert Ledger(application=target).history("ex") == before


def test_a_bundle_longer_than_the_stored_history_is_refused(
    source: str, target: LedgerApplication
) -> None:
    events = retried_and_failed().collect_events()
    with LedgerApplication(source) as app:
        app.save_events(events)
    target.save_events(events[:5])
    with Ledger(source) as ledger:
        sent = ledger.export("ex")

    with pytest.raises(
        ImportConflictError, match=r"\(5 events; they differ from version 6\)"
    ) as refused:
        import_bundle(target, sent)

    assert refused.value.version == 6
    assert len(target.stored_records(execution_uuid("ex"))) == 5


def test_a_bundle_that_does_not_verify_is_refused_listing_its_problems(
    bundle: Bundle, target: LedgerApplication
) -> None:
    bundle["events"][8]["data"]["output"] = {"ok": True}
    bundle["chain_head"] = "f" * 64

    with pytest.raises(ChainError) as refused:
        import_bundle(target, bundle)

    assert refused.value.version == 9
    assert "version 9: stored hash" in str(refused.value)
    assert target.aggregate_ids() == []


def test_a_consistent_forgery_that_does_not_replay_is_refused(
    bundle: Bundle, target: LedgerApplication
) -> None:
    not_a_workflow = {"id": "wf"}
    text = canonical_json(not_a_workflow)
    bundle["definition"] = bundle["events"][0]["data"]["definition"] = not_a_workflow
    bundle["definition_hash"] = bundle["events"][0]["data"]["definition_hash"] = sha256_hex(text)
    assert verify_bundle(rehash(bundle)).ok  # the chain proves integrity, not sense

    with pytest.raises(CorruptRecordError, match="not a workflow definition"):
        import_bundle(target, bundle)

    assert target.aggregate_ids() == []


def test_a_consistent_forgery_naming_an_unknown_step_is_refused(
    bundle: Bundle, target: LedgerApplication
) -> None:
    bundle["events"][2]["step_id"] = bundle["events"][2]["data"]["step_id"] = "ghost"
    assert verify_bundle(rehash(bundle)).ok

    with pytest.raises(CorruptRecordError, match="does not replay") as refused:
        import_bundle(target, bundle)

    assert refused.value.version == 3
    assert target.aggregate_ids() == []


# -- what is hashed -------------------------------------------------------------------


def test_rehashing_an_untouched_bundle_changes_nothing(bundle: Bundle) -> None:
    assert rehash(copy.deepcopy(bundle)) == bundle


def test_a_bundle_verifies_offline(bundle: Bundle) -> None:
    report = verify_bundle(bundle)
    assert (report.ok, report.checked, report.problems, report.executions) == (True, 14, (), 1)


def test_a_cut_history_with_a_matching_head_is_caught_only_by_an_expected_head(
    bundle: Bundle,
) -> None:
    original_head = bundle["chain_head"]
    del bundle["events"][-1]
    bundle["chain_head"] = bundle["events"][-1]["hash"]

    assert verify_bundle(bundle).ok
    report = verify_bundle(bundle, expected_head=original_head)
    assert problems(report) == [
        (13, f"chain head {bundle['chain_head']} is not the expected head {original_head}")
    ]
    assert verify_bundle(bundle, expected_head=bundle["chain_head"]).ok


def test_a_forged_history_must_start_with_its_execution_once(bundle: Bundle) -> None:
    started = bundle["events"][0]
    bundle["events"] = [bundle["events"][1], started, *bundle["events"][2:]]

    found = problems(verify_bundle(rehash(bundle)))

    assert (1, "ConditionEvaluated at position 1") in found
    assert (2, "ExecutionStarted at position 2") in found


# -- tampering ------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[Bundle], None]:
    """An edit that sets the value at a dotted path (numbers index lists)."""

    def edit(bundle: Bundle) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
        target: Any = bundle
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


def _swap(bundle: Bundle) -> None:
    events = bundle["events"]
    events[3], events[4] = events[4], events[3]


TAMPERING = {
    "an output": (_set("events.8.data.output", {"ok": True}), 9, "does not match"),
    "an error message": (_set("events.12.data.error.message", "fine"), 13, "does not match"),
    "a condition's value": (_set("events.9.data.value", True), 10, "does not match"),
    "the input": (_set("events.0.data.input", {"k": 2}), 1, "does not match"),
    "a retry time": (
        _set("events.4.data.not_before", "2024-05-01T12:00:09+00:00"),
        5,
        "does not match",
    ),
    "a duration": (_set("events.8.data.duration_ms", 1234), 9, "does not match"),
    "a timestamp": (
        _set("events.2.timestamp", "2024-05-01T12:00:02.500000+00:00"),
        3,
        "does not match",
    ),
    "a timestamp's spelling": (
        _set("events.2.timestamp", "2024-05-01T12:00:02Z"),
        3,
        "not in the form it was recorded in",
    ),
    "a step id": (_set("events.2.step_id", "b"), 3, "is not the event's step"),
    "a type with the same fields": (_set("events.10.type", "StepCancelled"), 11, "does not match"),
    "a hash": (_set("events.4.hash", "0" * 64), 5, "does not match"),
    "a previous hash": (_set("events.4.prev_hash", "0" * 64), 5, "is not the previous hash"),
    "a version": (_set("events.4.version", 6), 5, "expected version 5, found 6"),
    "an event's removal": (lambda b: b["events"].pop(5), 6, "expected version 6, found 7"),
    "an event's insertion": (
        lambda b: b["events"].insert(5, copy.deepcopy(b["events"][4])),
        6,
        "expected version 6, found 5",
    ),
    "the order": (_swap, 4, "expected version 4, found 5"),
    "the last event's removal": (lambda b: b["events"].pop(), 13, "does not match the expected"),
    "the chain head": (_set("chain_head", "e" * 64), 14, "does not match the expected head"),
    "the definition": (_set("definition.steps.0.id", "z"), 1, "does not match its hash"),
    "the definition hash": (_set("definition_hash", "d" * 64), 1, "is not the recorded"),
    "the execution id": (_set("execution_id", "other"), 1, "is not the recorded 'ex'"),
    "the workflow id": (_set("workflow_id", "other"), 1, "is not the recorded 'wf'"),
}


@pytest.mark.parametrize("edit", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_is_reported_at_its_version(
    bundle: Bundle, edit: tuple[Callable[[Bundle], Any], int, str]
) -> None:
    change, version, reason = edit
    change(bundle)

    report = verify_bundle(json.loads(json.dumps(bundle)))

    assert not report.ok
    assert report.problems[0].version == version
    assert reason in report.problems[0].reason
    assert report.problems[0].execution_id == bundle["execution_id"]


def test_a_definition_replaced_with_its_own_hash_is_still_caught(bundle: Bundle) -> None:
    bundle["definition"]["description"] = "edited"
    bundle["definition_hash"] = sha256_hex(canonical_json(bundle["definition"]))

    found = problems(verify_bundle(bundle))

    assert [version for version, _ in found] == [1, 1]
    assert "the definition is not the one the execution recorded" in found[1][1]


# -- malformed bundles ----------------------------------------------------------------


def _without(key: str) -> Callable[[Bundle], None]:
    return lambda bundle: bundle.pop(key)


MALFORMED: dict[str, tuple[Callable[[Bundle], Any], int, str]] = {
    **{
        f"without {key}": (_without(key), 0, "format is None" if key == "format" else key)
        for key in BUNDLE_KEYS
    },
    "another format": (_set("format", "flowledger.export/2"), 0, "not 'flowledger.export/1'"),
    "events not a list": (_set("events", {}), 0, "events of the bundle is an object"),
    "a definition that is a list": (_set("definition", []), 0, "definition of the bundle is"),
    "a numeric chain head": (_set("chain_head", 5), 0, "chain_head of the bundle is a number"),
    "no events": (_set("events", []), 0, "holds no events"),
    "an event that is text": (_set("events.3", "oops"), 4, "event 4 is a string"),
    "an event without data": (lambda b: b["events"][3].pop("data"), 4, "event 4 lacks data"),
    "a boolean version": (_set("events.3.version", True), 4, "version of event 4 is a boolean"),
    "data that is a list": (_set("events.3.data", []), 4, "data of event 4 is an array"),
    "first data a list": (_set("events.0.data", []), 1, "data of event 1 is an array"),
    "a duration that is NaN": (_set("events.8.data.duration_ms", float("nan")), 9, "JSON cannot"),
    "an unknown type": (_set("events.3.type", "StepTeleported"), 4, "not an execution event"),
    "an abstract type": (_set("events.3.type", "StepEvent"), 4, "not an execution event"),
    "an extra field": (_set("events.3.data.extra", 1), 4, "unknown fields ['extra']"),
    "a missing field": (lambda b: b["events"][3]["data"].pop("attempt"), 4, "lacks ['attempt']"),
    "a timestamp that is not a time": (_set("events.3.timestamp", "soon"), 4, "not an ISO 8601"),
    "a naive timestamp": (_set("events.3.timestamp", "2024-05-01T12:00:03"), 4, "not in the form"),
    "a retry time that is a number": (_set("events.4.data.not_before", 7), 5, "is a number"),
    "a null step id of a step event": (_set("events.3.step_id", None), 4, "is not the event's"),
}


@pytest.mark.parametrize("edit", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_bundle_is_reported_not_raised(
    bundle: Bundle, target: LedgerApplication, edit: tuple[Callable[[Bundle], Any], int, str]
) -> None:
    change, version, reason = edit
    change(bundle)

    report = verify_bundle(bundle)

    assert not report.ok
    assert (report.problems[0].version, reason in report.problems[0].reason) == (version, True)
    with pytest.raises(ChainError, match="the bundle does not verify"):
        import_bundle(target, bundle)
    assert target.aggregate_ids() == []


@pytest.mark.parametrize("document", [None, [], "a bundle", 42, 1.5, True])
def test_a_document_that_is_not_an_object_is_reported(document: Any) -> None:
    report = verify_bundle(document)
    assert not report.ok
    assert report.problems[0].version == 0
    assert report.problems[0].reason.startswith("a bundle is a JSON object, not ")
    assert report.problems[0].execution_id == "?"


def test_a_payload_json_cannot_hold_is_reported(bundle: Bundle) -> None:
    bundle["events"][0]["data"]["input"] = {"k": {1, 2}}

    ((version, reason),) = problems(verify_bundle(bundle))

    assert version == 1
    assert reason.startswith("input is not JSON")


def test_a_definition_json_cannot_hold_is_reported(bundle: Bundle) -> None:
    bundle["definition"]["description"] = float("nan")

    ((version, reason),) = problems(verify_bundle(bundle))

    assert version == 1
    assert reason.startswith("the definition is not JSON")


def test_every_malformed_event_is_reported(bundle: Bundle) -> None:
    bundle["events"][3]["type"] = "Nope"
    bundle["events"][6]["timestamp"] = "later"

    found = problems(verify_bundle(bundle))

    assert [version for version, _ in found] == [4, 7]


# -- any single edit is detected ------------------------------------------------------


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path


def _edited(value: Any) -> Any:
    """A different JSON value of the same kind where there is one."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x" if value else "x"
    return "x" if value is None else None


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A bundle with every kind of value, exported once for the property below."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sample')}/ledger.db"
    (found,) = exported(url, retried_and_failed())
    return found


@given(data=st.data())
def test_any_single_edit_of_a_bundle_is_detected(sample: Bundle, data: st.DataObject) -> None:
    bundle = copy.deepcopy(sample)
    *parents, last = data.draw(st.sampled_from(list(_leaves(bundle))), label="path")
    holder: Any = bundle
    for part in parents:
        holder = holder[part]
    holder[last] = _edited(holder[last])

    assert not verify_bundle(json.loads(json.dumps(bundle))).ok


@given(data=st.data())
def test_any_reordering_removal_or_duplication_of_events_is_detected(
    sample: Bundle, data: st.DataObject
) -> None:
    bundle = copy.deepcopy(sample)
    events = bundle["events"]
    first = data.draw(st.integers(0, len(events) - 1), label="first")
    second = data.draw(st.integers(0, len(events) - 1).filter(lambda n: n != first), label="second")
    change = data.draw(st.sampled_from(["swap", "remove", "duplicate"]), label="change")
    if change == "swap":
        events[first], events[second] = events[second], events[first]
    elif change == "remove":
        del events[first]
    else:
        events.insert(second, copy.deepcopy(events[first]))

    assert not verify_bundle(bundle).ok
