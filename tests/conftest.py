"""Test-suite configuration: Hypothesis profiles, and fixtures shared across layers.

``HYPOTHESIS_PROFILE`` selects one: ``dev`` (quick, the default on a workstation),
``ci`` (more examples, used when ``CI=true``) and ``thorough`` (long runs on demand).
PostgreSQL fixtures (``postgres_url``: a fresh schema per test) come from
:mod:`tests.postgres`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from flowledger import WorkflowEngine
from flowledger.domain import snapshot as snapshots
from tests.postgres import (  # noqa: F401 - fixtures and a hook, for every test
    postgres_server,
    postgres_url,
    pytest_collection_modifyitems,
)

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def empty_cache() -> Iterator[None]:
    """Forget every remembered definition, as in a process that just started."""
    saved = dict(snapshots._DEFINITIONS)
    snapshots._DEFINITIONS.clear()
    yield
    snapshots._DEFINITIONS.clear()
    snapshots._DEFINITIONS.update(saved)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store in the test's own directory."""
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
async def engine(url: str) -> AsyncIterator[WorkflowEngine]:
    """A started engine on :func:`url`; stopped and closed afterwards."""
    started = WorkflowEngine(store=url)
    async with started:
        yield started
    started.close()
