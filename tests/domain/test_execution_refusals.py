"""Commands an execution must refuse: in terminal states, and with naive times."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime

import pytest

from flowledger.domain.execution import Execution
from tests.domain.factories import at, error, refused, started


def all_commands(execution: Execution, when: datetime) -> dict[str, Callable[[], object]]:
    return {
        "start_step": lambda: execution.start_step("a", {}, when),
        "complete_step": lambda: execution.complete_step("a", {}, 1, when),
        "fail_step": lambda: execution.fail_step("a", error(), True, 1, when),
        "time_out_step": lambda: execution.time_out_step("a", 1, when),
        "schedule_retry": lambda: execution.schedule_retry("a", when, when),
        "skip_step": lambda: execution.skip_step("b", "r", when),
        "pause_step": lambda: execution.pause_step("b", "x", when),
        "interrupt_step": lambda: execution.interrupt_step("a", when),
        "cancel_step": lambda: execution.cancel_step("b", "r", when),
        "start_compensation": lambda: execution.start_compensation("a", when),
        "roll_back_step": lambda: execution.roll_back_step("a", {}, when),
        "fail_compensation": lambda: execution.fail_compensation("a", error(), when),
        "record_condition": lambda: execution.record_condition("a", "b", None, True, when),
        "provide_input": lambda: execution.provide_input({}, None, when),
        "pause": lambda: execution.pause("r", when),
        "resume": lambda: execution.resume(None, when),
        "request_cancel": lambda: execution.request_cancel("r", None, when),
        "cancel": lambda: execution.cancel(when),
        "start_rollback": lambda: execution.start_rollback("r", when),
        "finish_rollback": lambda: execution.finish_rollback(when),
        "fail_rollback": lambda: execution.fail_rollback(None, error(), when),
        "complete": lambda: execution.complete({}, when),
        "fail": lambda: execution.fail(None, error(), when),
    }


@pytest.mark.parametrize("end", ["complete", "fail", "cancel", "rolled_back", "rollback_failed"])
def test_terminal_executions_refuse_every_command(end: str) -> None:
    execution = started("a", "b")
    execution.start_step("a", {}, at(1))
    if end in {"cancel", "rolled_back", "rollback_failed"}:
        execution.request_cancel("r", None, at(2), rollback=end != "cancel")
    if end in {"rolled_back", "rollback_failed"}:
        execution.start_rollback("r", at(3))
    finish = {
        "complete": lambda: execution.complete({}, at(4)),
        "fail": lambda: execution.fail("a", error(), at(4)),
        "cancel": lambda: execution.cancel(at(4)),
        "rolled_back": lambda: execution.finish_rollback(at(4)),
        "rollback_failed": lambda: execution.fail_rollback(None, error(), at(4)),
    }
    finish[end]()
    assert execution.is_terminal
    for name, command in all_commands(execution, at(5)).items():
        assert refused(execution, command).entity == "execution", name


def test_naive_times_are_refused_by_every_command() -> None:
    execution = started("a", "b")
    naive = datetime(2024, 1, 1)
    for name, command in all_commands(execution, naive).items():
        before = copy.deepcopy(vars(execution))
        with pytest.raises(ValueError, match="timezone-aware"):
            command()
        assert vars(execution) == before, name
    execution.start_step("a", {}, at(1))
    execution.fail_step("a", error(), True, 1, at(2))
    with pytest.raises(ValueError, match="not_before"):
        execution.schedule_retry("a", naive, at(3))
