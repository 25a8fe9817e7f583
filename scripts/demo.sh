#!/usr/bin/env bash
# Runs the main job: sets up its own virtual environment, checks the example workflow,
# then runs it on the embedded SQLite store and prints each execution's audit history.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --editable .
.venv/bin/flowledger validate examples/order_fulfilment.yaml
echo
.venv/bin/python examples/order_fulfilment.py "$@"
