"""The kit's public names (pinned so none disappears)."""

from __future__ import annotations

import pytest

import flowledger.testing as kit

PUBLIC = {
    "CrashPointResult",
    "CrashingApplication",
    "Fake",
    "FakeCall",
    "InjectedCrash",
    "PropertyViolation",
    "RunTrace",
    "TransientError",
    "WorkflowCheckReport",
    "behaviours",
    "check_replay",
    "check_workflow",
    "check_workflow_async",
    "crash_points",
}


def test_every_public_name_is_exported() -> None:
    assert set(kit.__all__) == PUBLIC
    for name in kit.__all__:
        assert getattr(kit, name) is not None


def test_a_violation_is_an_assertion_error() -> None:
    assert issubclass(kit.PropertyViolation, AssertionError)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = kit.nothing
