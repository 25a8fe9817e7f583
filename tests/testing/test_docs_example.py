"""docs/testing.md: its worked example runs exactly as shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def worked_example() -> str:
    """The first Python block of the page: the worked example."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, f"{DOC} has no python block"
    return blocks[0]


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "testing_docs_example"}
    exec(compile(worked_example(), str(DOC), "exec"), namespace)
    return namespace


def test_the_example_defines_tests(example: dict[str, Any]) -> None:
    assert len([name for name in example if name.startswith("test_")]) == 4


@pytest.mark.parametrize(
    "name",
    [
        "test_the_order_survives_a_crash_after_any_event",
        "test_a_failed_shipment_refunds_the_charge",
        "test_an_action_that_is_not_deterministic_is_caught",
        "test_the_order_keeps_its_properties_whatever_the_actions_do",
    ],
)
def test_each_test_of_the_example_passes(example: dict[str, Any], name: str) -> None:
    example[name]()
