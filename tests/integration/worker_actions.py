"""Actions for the multi-worker tests: deterministic outputs, logged calls, random waits.

``flowledger worker --actions tests.integration.worker_actions`` loads :data:`actions`.
Each call appends lines to ``<FLOWLEDGER_TEST_ACTION_LOG>/<pid>.log`` (one file per
process, so lines of different workers never interleave), one before and one after
its work::

    <kind> <execution> <step> <pid> <unix time>

``kind`` is ``start`` or ``done``. The test reads the files back to tell which process
ran which step, and which steps a killed worker had in flight. The waits are random
(timing only) so that the workers' steps genuinely overlap; outputs depend only on the
parameters, so any worker, or a single engine, computes the same outputs. Without the
environment variable nothing is logged (the in-process reference run).

:data:`FANOUT` is the workflow the tests run: a root, three parallel branches, a join
of their outputs and a last step whose parameter interpolates upstream outputs.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

from flowledger.engine.actions import ActionRegistry

LOG_DIR_ENV = "FLOWLEDGER_TEST_ACTION_LOG"
"""The environment variable naming the directory of the actions' log files."""

SLEEP_ENV = "FLOWLEDGER_TEST_ACTION_SLEEP"
"""The environment variable giving the longest random wait, in seconds (default 0.02)."""

DEFAULT_SLEEP = 0.02
"""The longest random wait of an action unless the environment says otherwise."""

actions = ActionRegistry()
"""The registry a worker loads with ``--actions tests.integration.worker_actions``."""


def log_path(directory: Path, pid: int) -> Path:
    """The log file of process ``pid`` in ``directory``."""
    return directory / f"{pid}.log"


def _log(kind: str, tag: str) -> None:
    directory = os.environ.get(LOG_DIR_ENV)
    if not directory:
        return
    execution, step = tag.rsplit("/", 1)
    line = f"{kind} {execution} {step} {os.getpid()} {time.time():.6f}\n"
    # One write of a short line with O_APPEND: a SIGKILL never leaves half a line. No
    # fsync: the page cache outlives the process, and the machine is not what is killed.
    fd = os.open(log_path(Path(directory), os.getpid()), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def _logged(tag: str, output: dict[str, Any]) -> dict[str, Any]:
    """Log the call, wait a random moment (so steps overlap), log its end, return."""
    _log("start", tag)
    longest = float(os.environ.get(SLEEP_ENV) or DEFAULT_SLEEP)
    await asyncio.sleep(random.uniform(0.0, longest))  # timing only, never the output
    _log("done", tag)
    return output


@actions.action("work")
async def work(tag: str, value: int, factor: int) -> dict[str, Any]:
    """Return ``value * factor + 1``, named by the step's tag."""
    return await _logged(tag, {"tag": tag, "value": value * factor + 1})


@actions.action("join")
async def join(tag: str, values: list[int]) -> dict[str, Any]:
    """Return the sum of the branches' values and the values themselves, in order."""
    return await _logged(tag, {"tag": tag, "value": sum(values), "parts": values})


@actions.action("label")
async def label(tag: str, text: str, total: int) -> dict[str, Any]:
    """Return the text (interpolated from upstream outputs) and the total it names."""
    return await _logged(tag, {"tag": tag, "text": text, "total": total})


def _tag(step_id: str) -> str:
    return f"${{input.key}}/{step_id}"


def _value(step_id: str) -> str:
    return f"${{{step_id}.output.value}}"


def _branch(step_id: str, factor: int) -> dict[str, Any]:
    return {
        "id": step_id,
        "action": "work",
        "parameters": {"tag": _tag(step_id), "value": _value("root"), "factor": factor},
        "depends_on": ["root"],
    }


FANOUT: dict[str, Any] = {
    "id": "fanout",
    "steps": [
        {
            "id": "root",
            "action": "work",
            "parameters": {"tag": _tag("root"), "value": "${input.n}", "factor": 1},
        },
        _branch("left", 2),
        _branch("middle", 3),
        _branch("right", 5),
        {
            "id": "join",
            "action": "join",
            "parameters": {
                "tag": _tag("join"),
                "values": [_value("left"), _value("middle"), _value("right")],
            },
            "depends_on": ["left", "middle", "right"],
        },
        {
            # No depends_on: after the step before it (join). One whole reference keeps
            # its type; references inside a longer string are interpolated.
            "id": "report",
            "action": "label",
            "parameters": {
                "tag": _tag("report"),
                "text": "${input.key}: ${left.output.value}+${middle.output.value}"
                "+${right.output.value}=${join.output.value}",
                "total": _value("join"),
            },
        },
    ],
}
"""Six steps: root, three parallel branches, their join, and a report after the join."""

FANOUT_STEPS = ("root", "left", "middle", "right", "join", "report")
"""The step ids of :data:`FANOUT`."""
