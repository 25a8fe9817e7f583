"""Hypothesis helpers: behaviours drawn per step, crash points; and how a user writes tests."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, find, given, settings

from flowledger import ExecutionStatus
from flowledger.testing import Fake, FakeCall, behaviours, check_workflow, crash_points

ORDER = {
    "id": "order",
    "steps": [
        {"id": "reserve", "action": "reserve", "compensate": {"action": "release"}},
        {"id": "charge", "action": "charge", "retry": {"max_attempts": 3}},
        {"id": "note", "action": "echo", "parameters": {"done": True}},
    ],
}

HISTORY_LENGTH = check_workflow(
    ORDER,
    {"reserve": Fake.echoes(), "charge": Fake.echoes(), "release": Fake.echoes()},
    crash_points=(),
).history_length


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fakes=behaviours(ORDER), point=crash_points(HISTORY_LENGTH))
def test_an_order_keeps_its_properties_whatever_its_actions_do(
    fakes: dict[str, Fake], point: int
) -> None:
    report = check_workflow(ORDER, fakes, crash_points=[point])

    assert report.state.status in {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.ROLLED_BACK,
    }


@settings(max_examples=15, deadline=None)
@given(fakes=behaviours(ORDER, max_transient=1, permanent=False, outputs={"charge": "paid"}))
def test_without_permanent_failures_an_order_completes(fakes: dict[str, Fake]) -> None:
    assert set(fakes) == {"reserve", "charge", "release"}  # no fake for the built-in echo

    report = check_workflow(ORDER, fakes, crash_points=())

    assert report.state.status is ExecutionStatus.COMPLETED
    assert report.state.outputs["charge"] == "paid"


@settings(max_examples=5)
@given(fakes=behaviours(ORDER))
async def test_drawn_fakes_echo_compensations(fakes: dict[str, Fake]) -> None:
    undo = FakeCall("reserve", "reserve", 1, 1, {"x": 1}, compensation=True)

    assert await fakes["reserve"].answer(undo) == {"x": 1}
    assert repr(fakes["reserve"]).startswith("Fake.by_step({'reserve': ")


@given(point=crash_points(3))
def test_crash_points_are_drawn_from_the_history(point: int) -> None:
    assert point in {1, 2, 3}


def test_a_history_has_at_least_one_crash_point() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        crash_points(0)


def test_a_search_shrinks_to_the_plainest_behaviour_that_rolls_back() -> None:
    def rolls_back(fakes: dict[str, Fake]) -> bool:
        report = check_workflow(ORDER, fakes, crash_points=())
        return report.state.status is ExecutionStatus.ROLLED_BACK

    found = find(behaviours(ORDER), rolls_back, settings=settings(max_examples=40, database=None))

    assert repr(found["reserve"]) == "Fake.by_step({'reserve': Fake.echoes()})"
    assert repr(found["charge"]) == (
        "Fake.by_step({'charge': Fake.raises('permanent failure', permanent)})"
    )


def test_the_kit_imports_without_hypothesis() -> None:
    script = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import flowledger.testing as kit\n"
        "assert kit.Fake.returns(1)\n"
        "try:\n"
        "    kit.behaviours\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'flowledger[testing]'" in done.stdout
