"""Step metrics: how each action fares, per workflow, derived from step events.

The action a step runs is read from the definition that ``ExecutionStarted`` records,
so metrics are grouped by ``(workflow_id, action)``. Each *attempt* counts: a step
retried twice is three attempts. Steps that run no action (graph-format triggers) and
compensations are not counted. Durations are those recorded by ``StepCompleted`` and
``StepFailed``; a timed-out attempt has no known duration and counts only as a failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from eventsourcing.sqlite import SQLiteCursor

from flowledger.domain.events import (
    ExecutionStarted,
    StepCompleted,
    StepFailed,
    StepRetryScheduled,
    StepStarted,
    StepTimedOut,
)
from flowledger.projections.view_store import LoggedEvent

logger = logging.getLogger(__name__)

_REMEMBERED_EXECUTIONS = 4096
"""Executions whose workflow and step actions are kept in memory between pages."""

# Counter columns, in the order of the upsert's values.
_STARTED, _COMPLETED, _FAILED, _TIMEOUTS, _RETRIES = range(5)

Actions = dict[str, str]
"""Step id -> the action it runs."""


@dataclass(frozen=True)
class StepMetrics:
    """What the attempts of one action in one workflow came to.

    Percentiles are nearest-rank: the smallest recorded duration that at least that
    share of the durations do not exceed.

    Attributes:
        workflow_id: The workflow.
        action: The action its steps run.
        count: Attempts started (a restart after a crash counts again).
        completed: Attempts that returned.
        failed: Attempts that failed, timed-out ones included.
        retries: Retries scheduled (``StepRetryScheduled``).
        timeouts: Attempts that timed out.
        p50_ms: Median duration of the attempts that returned or raised, in ms (None
            when there is none).
        p95_ms: 95th percentile of those durations, in ms (None when there is none).
        max_ms: Longest of those durations, in ms (None when there is none).
    """

    workflow_id: str
    action: str
    count: int
    completed: int
    failed: int
    retries: int
    timeouts: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None

    @property
    def failure_rate(self) -> float:
        """Share of the finished attempts that failed (0.0 when none finished)."""
        finished = self.completed + self.failed
        return self.failed / finished if finished else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a JSON-ready dict, ``failure_rate`` included."""
        return {**asdict(self), "failure_rate": self.failure_rate}


class StepMetricsProjection:
    """Keeps per-action counters and durations, grouped by workflow and action."""

    tables: Sequence[str] = (
        "step_metrics",
        "step_durations",
        "step_metric_executions",
        "step_metric_definitions",
    )

    def __init__(self) -> None:
        # Which workflow and actions an execution has never changes, so what is
        # remembered stays true even when a page's transaction is rolled back.
        self._executions: dict[str, tuple[str, Actions]] = {}
        self._definitions: dict[str, Actions] = {}

    def create_statements(self) -> list[str]:
        """Return the tables: counters, durations, and what each execution runs."""
        return [
            "CREATE TABLE IF NOT EXISTS step_metrics ("
            "workflow_id TEXT NOT NULL, action TEXT NOT NULL, started INTEGER NOT NULL, "
            "completed INTEGER NOT NULL, failed INTEGER NOT NULL, timeouts INTEGER NOT NULL, "
            "retries INTEGER NOT NULL, PRIMARY KEY (workflow_id, action)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS step_durations ("
            "workflow_id TEXT NOT NULL, action TEXT NOT NULL, duration_ms REAL NOT NULL)",
            "CREATE INDEX IF NOT EXISTS step_durations_by_action "
            "ON step_durations (workflow_id, action, duration_ms)",
            "CREATE TABLE IF NOT EXISTS step_metric_executions ("
            "aggregate_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, "
            "definition_hash TEXT NOT NULL) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS step_metric_definitions ("
            "definition_hash TEXT PRIMARY KEY, actions TEXT NOT NULL) WITHOUT ROWID",
        ]

    def apply(self, cursor: SQLiteCursor, events: Sequence[LoggedEvent]) -> None:
        """Add a page of step events to the counters and durations."""
        counters: dict[tuple[str, str], list[int]] = {}
        durations: list[tuple[str, str, float]] = []
        started = [
            (position, event) for position, event in events if isinstance(event, ExecutionStarted)
        ]
        self._remember_starts(cursor, started)
        for _, event in events:
            if not isinstance(
                event, StepStarted | StepCompleted | StepFailed | StepTimedOut | StepRetryScheduled
            ):
                continue
            group = self._group_of(cursor, str(event.originator_id), event.step_id)
            if group is None:
                continue
            counts = counters.setdefault(group, [0, 0, 0, 0, 0])
            if isinstance(event, StepStarted):
                counts[_STARTED] += 1
            elif isinstance(event, StepCompleted):
                counts[_COMPLETED] += 1
                durations.append((*group, event.duration_ms))
            elif isinstance(event, StepFailed):
                counts[_FAILED] += 1
                durations.append((*group, event.duration_ms))
            elif isinstance(event, StepTimedOut):
                counts[_FAILED] += 1
                counts[_TIMEOUTS] += 1
            else:
                counts[_RETRIES] += 1
        cursor.executemany(
            "INSERT INTO step_metrics VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (workflow_id, action) DO UPDATE SET "
            "started = started + excluded.started, completed = completed + excluded.completed, "
            "failed = failed + excluded.failed, timeouts = timeouts + excluded.timeouts, "
            "retries = retries + excluded.retries",
            [(*group, *counts) for group, counts in counters.items()],
        )
        cursor.executemany("INSERT INTO step_durations VALUES (?, ?, ?)", durations)

    def _remember_starts(
        self, cursor: SQLiteCursor, started: Sequence[tuple[int, ExecutionStarted]]
    ) -> None:
        definitions: dict[str, str] = {}
        executions = []
        for position, event in started:
            actions = self._definitions.get(event.definition_hash)
            if actions is None:
                actions = _actions_of(event.definition, position)
                self._definitions[event.definition_hash] = actions
            if event.definition_hash not in definitions:
                definitions[event.definition_hash] = json.dumps(actions)
            key = str(event.originator_id)
            executions.append((key, event.workflow_id, event.definition_hash))
            self._remember(key, event.workflow_id, actions)
        cursor.executemany(
            "INSERT INTO step_metric_definitions VALUES (?, ?) "
            "ON CONFLICT (definition_hash) DO NOTHING",
            list(definitions.items()),
        )
        cursor.executemany(
            "INSERT INTO step_metric_executions VALUES (?, ?, ?) "
            "ON CONFLICT (aggregate_id) DO NOTHING",
            executions,
        )

    def _remember(self, key: str, workflow_id: str, actions: Actions) -> None:
        if len(self._executions) >= _REMEMBERED_EXECUTIONS:
            self._executions.clear()
        self._executions[key] = (workflow_id, actions)

    def _group_of(self, cursor: SQLiteCursor, key: str, step_id: str) -> tuple[str, str] | None:
        """Return ``(workflow_id, action)`` of a step, or None if it runs no action."""
        known = self._executions.get(key)
        if known is None:
            cursor.execute(
                "SELECT e.workflow_id, d.actions FROM step_metric_executions AS e "
                "JOIN step_metric_definitions AS d USING (definition_hash) "
                "WHERE e.aggregate_id = ?",
                (key,),
            )
            row = cursor.fetchone()
            if row is None:  # its first event could not be read
                return None
            known = (row[0], json.loads(row[1]))
            self._remember(key, *known)
        workflow_id, actions = known
        action = actions.get(step_id)
        return None if action is None else (workflow_id, action)

    def select(
        self, cursor: SQLiteCursor, workflow_id: str | None = None, action: str | None = None
    ) -> list[StepMetrics]:
        """Return the metrics of every (workflow, action), sorted, optionally filtered."""
        filters = [
            (column, value)
            for column, value in (("workflow_id", workflow_id), ("action", action))
            if value is not None
        ]
        params = [value for _, value in filters]

        def where(prefix: str) -> str:
            clauses = [f"{prefix}{column} = ?" for column, _ in filters]
            return f"WHERE {' AND '.join(clauses)} " if clauses else ""

        # Nearest rank: the p-th percentile of n sorted values is the one at rank
        # ceil(p * n), here in integer arithmetic: (n + 1) / 2 and (95n + 99) / 100.
        cursor.execute(
            "WITH ranked AS (SELECT workflow_id, action, duration_ms, "  # noqa: S608 - fixed clauses
            "ROW_NUMBER() OVER (PARTITION BY workflow_id, action ORDER BY duration_ms) AS r, "
            "COUNT(*) OVER (PARTITION BY workflow_id, action) AS n "
            f"FROM step_durations {where('')}), "
            "percentiles AS (SELECT workflow_id, action, "
            "MAX(CASE WHEN r = (n + 1) / 2 THEN duration_ms END) AS p50, "
            "MAX(CASE WHEN r = (95 * n + 99) / 100 THEN duration_ms END) AS p95, "
            "MAX(duration_ms) AS longest FROM ranked GROUP BY workflow_id, action) "
            "SELECT m.workflow_id, m.action, m.started, m.completed, m.failed, m.retries, "
            "m.timeouts, p.p50, p.p95, p.longest FROM step_metrics AS m "
            f"LEFT JOIN percentiles AS p USING (workflow_id, action) {where('m.')}"
            "ORDER BY m.workflow_id, m.action",
            params * 2,
        )
        return [StepMetrics(*row) for row in cursor.fetchall()]


def _actions_of(definition: str, position: int) -> Actions:
    """Return step id -> action of a canonical definition (JSON text)."""
    try:
        steps = json.loads(definition)["steps"]
        return {step["id"]: step["action"] for step in steps if step.get("action") is not None}
    except (ValueError, KeyError, TypeError, AttributeError):
        # A damaged first event: its steps are not counted; verify reports the record.
        logger.warning(
            "step metrics: the definition recorded at notification %d is unreadable; "
            "its steps are not counted",
            position,
        )
        return {}
