"""A worker process for the crash-recovery tests: runs one scenario to its end.

Run from the repository root::

    python -m tests.integration.crash_worker --store sqlite:///PATH --log PATH \
        --scenario NAME [--start N] [--wait SECONDS] [--kill-before STEP | --kill-at STEP]

It starts the scenario's executions under fixed ids (a restarted worker starting them
again changes nothing), resumes any it finds PAUSED, waits until every one is terminal,
prints ``ALL DONE`` and exits 0. The test kills it with SIGKILL at random moments and
starts it again on the same store.

Every action appends to the log file, and fsyncs, one line before and one after its
work, so the test can tell which actions were in flight when the process died::

    <kind> <execution> <step> <invocation> <pid> <unix time>

``kind`` is ``begin`` (the worker is about to start its engine), ``start``, ``done``,
``fail`` or ``crash`` (the process is about to kill itself, see ``--kill-before`` and
``--kill-at``: deterministic crash points, each taken once per step and execution).
Compensations log as step ``<step>.undo``. ``invocation`` counts the action's starts for
that execution and step across every process, read back from the log: an action that
must fail a number of times decides from it, never from the memory of a process that
may die. ``--start N`` starts N copies of each execution (ids ``<name>-1`` to
``<name>-N``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowledger.domain.status import ExecutionStatus
from flowledger.engine.engine import WorkflowEngine
from flowledger.errors import NonRetryableError

WAIT = 15.0
"""Seconds the worker waits for one execution before giving up (exit 1), by default."""

FLAKY_FAILURES = 2
"""How many invocations of ``flaky`` fail before one succeeds."""

PAUSE_INPUT = {"name": "ada"}
"""What the worker provides to an execution it finds PAUSED."""


class ActionLog:
    """The append-only, fsynced log the actions write, shared by every worker process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, kind: str, execution: str, step: str, invocation: int) -> None:
        line = f"{kind} {execution} {step} {invocation} {os.getpid()} {time.time():.6f}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def count(self, kind: str, execution: str, step: str) -> int:
        if not self.path.exists():
            return 0
        prefix = f"{kind} {execution} {step} "
        with self.path.open() as lines:
            return sum(1 for line in lines if line.startswith(prefix))


class Actions:
    """The scenarios' actions; each logs its start and its end around a short wait."""

    def __init__(
        self, log: ActionLog, *, kill_before: str | None = None, kill_at: str | None = None
    ) -> None:
        self.log = log
        self.kill_before = kill_before
        self.kill_at = kill_at

    def register(self, engine: WorkflowEngine) -> None:
        for name in ("work", "join", "flaky", "reject", "undo", "greet"):
            engine.action(name)(getattr(self, name))

    async def _run(self, tag: str, body: Callable[[int], Any]) -> Any:
        execution, step = tag.split("/")
        if step == self.kill_before:
            self._crash_once(execution, step)
        # No await between counting and writing: the count is this invocation's number.
        invocation = self.log.count("start", execution, step) + 1
        self.log.write("start", execution, step, invocation)
        if step == self.kill_at:
            self._crash_once(execution, step)
        await asyncio.sleep(random.uniform(0.002, 0.012))  # timing only
        try:
            result = body(invocation)
        except Exception:
            self.log.write("fail", execution, step, invocation)
            raise
        self.log.write("done", execution, step, invocation)
        return result

    async def work(self, tag: str, value: int) -> dict[str, Any]:
        return await self._run(tag, lambda _: {"tag": tag, "value": value + 1})

    async def join(self, tag: str, values: list[int]) -> dict[str, Any]:
        return await self._run(tag, lambda _: {"tag": tag, "value": sum(values)})

    def _crash_once(self, execution: str, step: str) -> None:
        """Kill this process, the first time ever this step gets here."""
        if not self.log.count("crash", execution, step):
            self.log.write("crash", execution, step, 0)
            os.kill(os.getpid(), signal.SIGKILL)

    async def flaky(self, tag: str, value: int) -> dict[str, Any]:
        def attempt(invocation: int) -> dict[str, Any]:
            if invocation <= FLAKY_FAILURES:
                msg = f"{tag}: invocation {invocation} fails"
                raise ConnectionError(msg)
            return {"tag": tag, "value": value + 1}

        return await self._run(tag, attempt)

    async def reject(self, tag: str) -> None:
        def refuse(_: int) -> None:
            msg = f"{tag} is refused"
            raise NonRetryableError(msg)

        await self._run(tag, refuse)

    async def undo(self, tag: str, value: int) -> dict[str, Any]:
        return await self._run(tag, lambda _: {"undone": value})

    async def greet(self, tag: str, name: str) -> dict[str, Any]:
        return await self._run(tag, lambda _: {"tag": tag, "greeting": f"hello {name}"})


# -- scenarios ---------------------------------------------------------------------------


def tag(step_id: str) -> str:
    return f"${{input.key}}/{step_id}"


def work(step_id: str, value: Any = 0, **options: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "action": "work",
        "parameters": {"tag": tag(step_id), "value": value},
        **options,
    }


def output(step_id: str) -> str:
    return f"${{{step_id}.output.value}}"


def parallel() -> dict[str, Any]:
    """One root, six branches (more than the four slots) joined, then a last step."""
    branches = [work(f"b{n}", output("root"), depends_on=["root"]) for n in range(1, 7)]
    join = {
        "id": "join",
        "action": "join",
        "parameters": {"tag": tag("join"), "values": [output(b["id"]) for b in branches]},
        "depends_on": [b["id"] for b in branches],
    }
    return {
        "id": "parallel",
        "steps": [work("root", 1), *branches, join, work("last", output("join"))],
    }


def retrying(max_attempts: int) -> dict[str, Any]:
    """Two flaky steps in parallel between two plain ones."""
    retry = {"max_attempts": max_attempts, "initial_interval": 0.02, "backoff": 1.5, "jitter": 0}

    def flaky(step_id: str) -> dict[str, Any]:
        return {
            "id": step_id,
            "action": "flaky",
            "parameters": {"tag": tag(step_id), "value": output("first")},
            "depends_on": ["first"],
            "retry": retry,
        }

    return {
        "id": "retry",
        "steps": [
            work("first", 10),
            flaky("flaky1"),
            flaky("flaky2"),
            work("last", output("flaky1"), depends_on=["flaky1", "flaky2"]),
        ],
    }


def rollback() -> dict[str, Any]:
    """Two compensable steps (one in parallel with a plain one), then a refusal."""

    def compensable(step_id: str, value: Any, **options: Any) -> dict[str, Any]:
        undo = {"tag": tag(f"{step_id}.undo"), "value": f"${{{step_id}.output.value}}"}
        return work(step_id, value, compensate={"action": "undo", "parameters": undo}, **options)

    return {
        "id": "rollback",
        "steps": [
            compensable("reserve", 1),
            compensable("charge", output("reserve")),
            work("note", output("reserve"), depends_on=["reserve"]),
            compensable("ship", output("charge"), depends_on=["charge"]),
            {
                "id": "deliver",
                "action": "reject",
                "parameters": {"tag": tag("deliver")},
                "depends_on": ["ship", "note"],
            },
        ],
    }


def pausing() -> dict[str, Any]:
    """A step that needs ``input.name``, which the execution is started without."""
    parameters = {"tag": tag("greet"), "name": "${input.name}"}
    greet = {"id": "greet", "action": "greet", "parameters": parameters}
    return {"id": "pause", "steps": [work("prepare", 1), greet, work("finish", 5)]}


def branches() -> dict[str, Any]:
    """Graph format: an if/else on the input merging into one node, and a condition
    on a step's output."""

    def node(node_id: str, value: Any) -> dict[str, Any]:
        parameters = {"tag": tag(node_id), "value": value}
        return {"id": node_id, "config": {"action": "work", "parameters": parameters}}

    return {
        "id": "branches",
        "nodes": [
            {"id": "start", "type": "trigger"},
            node("check", "${start.output.amount}"),
            node("auto", output("check")),
            node("manager", "${check.output.value}"),
            node("pay", "${start.output.amount}"),
            node("audit", output("pay")),
            node("receipt", output("pay")),
        ],
        "connections": [
            {"source": "start", "target": "check"},
            {"source": "check", "target": "auto", "condition": "output.value <= 100"},
            {"source": "check", "target": "manager", "condition": "output.value > 100"},
            {"source": "auto", "target": "pay"},
            {"source": "manager", "target": "pay"},
            {"source": "pay", "target": "audit", "condition": "output.value > 100"},
            {"source": "pay", "target": "receipt"},
        ],
    }


def chain(length: int = 20) -> dict[str, Any]:
    """A sequence of ``length`` steps, each adding one to the last one's value."""
    steps = [work("s01", 0)]
    steps += [work(f"s{n:02}", output(f"s{n - 1:02}")) for n in range(2, length + 1)]
    return {"id": "chain", "steps": steps}


Starts = list[tuple[str, dict[str, Any], dict[str, Any]]]
"""(execution id, definition, input) of each execution a scenario starts."""


def scenario(name: str, copies: int) -> Starts:
    """Return the executions of a scenario, ``copies`` of each under distinct ids."""
    plans: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {
        "parallel": [("parallel", parallel(), {})],
        "retry": [("retry", retrying(max_attempts=6), {})],
        "tight_retry": [("tight", retrying(max_attempts=3), {})],
        "rollback": [("rollback", rollback(), {})],
        "pause": [("pause", pausing(), {})],
        "branches": [
            ("small", branches(), {"amount": 50}),
            ("large", branches(), {"amount": 500}),
        ],
        "chain": [("chain", chain(), {})],
    }
    starts: Starts = []
    for copy in range(1, copies + 1):
        for prefix, definition, given in plans[name]:
            key = f"{prefix}-{copy}"
            starts.append((key, definition, {**given, "key": key}))
    return starts


SCENARIOS = ("parallel", "retry", "rollback", "pause", "branches", "chain")
"""The scenarios the crash test kills at random (``tight_retry`` is for one test)."""


# -- the worker --------------------------------------------------------------------------


async def settle(engine: WorkflowEngine, execution_id: str, wait: float) -> ExecutionStatus:
    """Wait until the execution is terminal, resuming it whenever it is PAUSED."""
    while True:
        try:
            state = await engine.wait_for(execution_id, timeout=wait)
        except TimeoutError:
            state = await engine.get_workflow_status(execution_id)
            steps = {step_id: step.status.value for step_id, step in state.steps.items()}
            msg = f"{execution_id} still {state.status.value} after {wait} s: {steps}"
            raise SystemExit(msg) from None
        if state.status.is_terminal:
            return state.status
        if state.status is ExecutionStatus.PAUSED:
            await engine.resume_workflow(execution_id, PAUSE_INPUT, actor="crash_worker")


async def run(store: str, starts: Starts, actions: Actions, wait: float = WAIT) -> None:
    engine = WorkflowEngine(store=store, max_concurrent_steps=4)
    actions.register(engine)  # before start(), which recovers unfinished executions
    log = actions.log
    log.write("begin", "-", "-", 0)
    try:
        async with engine:
            for execution_id, definition, given in starts:
                await engine.start_workflow(definition, given, execution_id=execution_id)
            for execution_id, _, _ in starts:
                await settle(engine, execution_id, wait)
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash_worker", description=__doc__)
    parser.add_argument("--store", required=True, help="store URL (sqlite:///PATH)")
    parser.add_argument("--log", required=True, type=Path, help="the actions' log file")
    parser.add_argument("--scenario", required=True, choices=[*SCENARIOS, "tight_retry"])
    parser.add_argument("--start", type=int, default=1, help="copies of each execution")
    parser.add_argument(
        "--wait", type=float, default=WAIT, help="seconds to wait for each execution"
    )
    parser.add_argument(
        "--kill-before",
        metavar="STEP",
        help="kill the process when STEP's action is first called, before it logs its start",
    )
    parser.add_argument(
        "--kill-at",
        metavar="STEP",
        help="kill the process when STEP's action first runs, right after it logs its start",
    )
    args = parser.parse_args(argv)
    actions = Actions(ActionLog(args.log), kill_before=args.kill_before, kill_at=args.kill_at)
    asyncio.run(run(args.store, scenario(args.scenario, args.start), actions, args.wait))
    print("ALL DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
