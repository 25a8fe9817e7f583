"""The definition model's own behaviour: retry intervals and step lookups."""

from __future__ import annotations

import dataclasses

import pytest

from flowledger.domain.definition import load_definition
from flowledger.domain.definition.model import RetryPolicy
from flowledger.errors import DefinitionError


class TestRetryIntervals:
    def test_intervals_grow_by_the_backoff_and_stop_at_the_cap(self) -> None:
        policy = RetryPolicy(initial_interval=1, backoff=2, max_interval=10)
        assert [policy.interval_before(attempt) for attempt in range(2, 8)] == [
            1.0,
            2.0,
            4.0,
            8.0,
            10.0,
            10.0,
        ]

    def test_huge_backoff_and_attempt_numbers_never_overflow(self) -> None:
        policy = RetryPolicy(max_attempts=1000, initial_interval=1, backoff=1000, max_interval=3600)
        assert policy.interval_before(1000) == 3600.0

    def test_zero_initial_interval_stays_zero(self) -> None:
        assert RetryPolicy(initial_interval=0, backoff=3).interval_before(9) == 0.0


class TestStepLookups:
    definition = load_definition(
        {
            "id": "w",
            "steps": [
                {"id": "a", "action": "noop"},
                {"id": "b", "action": "noop", "depends_on": []},
                {"id": "c", "action": "noop", "depends_on": ["a", "b"]},
            ],
        }
    )

    def test_step_by_id(self) -> None:
        assert self.definition.step("c").upstream_ids == ("a", "b")

    def test_unknown_step_is_a_key_error(self) -> None:
        with pytest.raises(KeyError):
            self.definition.step("zz")

    def test_downstream_steps_in_order(self) -> None:
        assert [step.id for step in self.definition.downstream("a")] == ["c"]
        assert self.definition.downstream("c") == ()
        assert self.definition.downstream("unknown") == ()

    def test_indexes_do_not_affect_equality_and_follow_replace(self) -> None:
        again = load_definition(self.definition.to_dict())
        assert again == self.definition
        fewer = dataclasses.replace(self.definition, steps=self.definition.steps[:2])
        with pytest.raises(KeyError):
            fewer.step("c")


class TestLoadingCache:
    def test_the_same_mapping_loads_once(self) -> None:
        source = {"id": "cached", "steps": [{"id": "a", "action": "noop"}]}
        first = load_definition(source)
        assert load_definition(dict(source)) is first

    def test_a_changed_mapping_loads_anew(self) -> None:
        first = load_definition({"id": "w1", "steps": [{"id": "a", "action": "noop"}]})
        second = load_definition({"id": "w1", "steps": [{"id": "b", "action": "noop"}]})
        assert second is not first
        assert second.step_ids == ("b",)

    def test_failures_are_not_cached(self) -> None:
        source = {"id": "bad", "steps": [{"id": "a"}]}
        for _ in range(2):
            with pytest.raises(DefinitionError):
                load_definition(source)

    def test_values_json_cannot_hold_are_reported_not_cached(self) -> None:
        with pytest.raises(DefinitionError):
            load_definition({"id": "w", "steps": [{"id": "a", "action": "noop", "x": {1, 2}}]})


def test_non_skippable_is_in_the_canonical_form_only_when_set() -> None:
    plain = {"id": "wf", "steps": [{"id": "a", "action": "noop"}]}
    marked = {"id": "wf", "steps": [{"id": "a", "action": "noop", "non_skippable": True}]}
    unmarked = {"id": "wf", "steps": [{"id": "a", "action": "noop", "non_skippable": False}]}

    # A definition that does not use the key keeps the hash it had before the key existed.
    assert load_definition(unmarked).hash == load_definition(plain).hash
    assert "non_skippable" not in load_definition(plain).to_dict()["steps"][0]
    canonical = load_definition(marked).to_dict()
    assert canonical["steps"][0]["non_skippable"] is True
    assert load_definition(canonical).steps[0].non_skippable
    assert (
        load_definition(canonical).hash
        == load_definition(marked).hash
        != load_definition(plain).hash
    )


def test_non_skippable_must_be_a_boolean_in_both_formats() -> None:
    with pytest.raises(DefinitionError) as found:
        load_definition(
            {"id": "wf", "steps": [{"id": "a", "action": "noop", "non_skippable": "yes"}]}
        )
    assert [problem.path for problem in found.value.errors] == ["$.steps[0].non_skippable"]
    graph = {
        "id": "g",
        "nodes": [
            {"id": "a", "type": "action", "config": {"action": "noop", "non_skippable": True}}
        ],
        "connections": [],
    }
    assert load_definition(graph).step("a").non_skippable
