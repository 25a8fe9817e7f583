#!/usr/bin/env bash
# Runs the whole test suite: sets up its own virtual environment, then lint, format,
# types, import layers, and the tests with branch coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --editable '.[dev]'
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-$([ "${CI:-}" = true ] && echo ci || echo dev)}"
echo "== ruff";          .venv/bin/ruff check .
echo "== ruff format";   .venv/bin/ruff format --check .
echo "== mypy";          .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest (hypothesis profile: $HYPOTHESIS_PROFILE)"
.venv/bin/pytest --cov=flowledger --cov-branch --cov-report=term --cov-fail-under=90 "$@"
echo "== domain coverage (>= 95%)"
echo "domain branch coverage: $(.venv/bin/coverage report --include='flowledger/domain/*' --fail-under=95 --format=total)%"
