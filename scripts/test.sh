#!/usr/bin/env bash
# Runs the whole test suite: sets up its own virtual environment, then lint, format,
# types, import layers, and the tests with branch coverage. PostgreSQL tests use the
# server FLOWLEDGER_TEST_POSTGRES names (started here if this machine has a cluster);
# without one they are skipped, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --editable '.[dev,postgres]'
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-$([ "${CI:-}" = true ] && echo ci || echo dev)}"
echo "== ruff";          .venv/bin/ruff check .
echo "== ruff format";   .venv/bin/ruff format --check .
echo "== mypy";          .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports

# Starts this machine's PostgreSQL cluster if it is installed but not running. Never
# fails the script: without a server the PostgreSQL tests report why they did not run.
ensure_postgres() {
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
        return 0
    fi
    if [ ! -d /etc/postgresql ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "no PostgreSQL cluster on this machine"
        return 0
    fi
    local config version
    for config in /etc/postgresql/*/main; do
        [ -d "$config" ] || continue
        version="$(basename "$(dirname "$config")")"
        local as_owner=()  # root or the cluster's owner start it themselves
        if [ "$(id -u)" -ne 0 ] && [ ! -O "$config" ] && sudo -n true 2>/dev/null; then
            as_owner=(sudo -n)
        fi
        ${as_owner[@]+"${as_owner[@]}"} pg_ctlcluster --skip-systemctl-redirect "$version" main start \
            || echo "could not start PostgreSQL $version (main)"
    done
}
echo "== postgresql";    ensure_postgres
export FLOWLEDGER_TEST_POSTGRES="${FLOWLEDGER_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432/test}"
echo "== pytest (hypothesis profile: $HYPOTHESIS_PROFILE)"
# Two workers (these machines have two cores); work-stealing keeps the long property
# tests from finishing last on one of them.
.venv/bin/pytest -n 2 --dist worksteal --cov=flowledger --cov-branch --cov-report=term \
    --cov-fail-under=90 "$@"
echo "== domain coverage (>= 95%)"
echo "domain branch coverage: $(.venv/bin/coverage report --include='flowledger/domain/*' --fail-under=95 --format=total)%"
