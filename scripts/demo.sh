#!/usr/bin/env bash
# Runs the main job: sets up its own virtual environment, then checks the example
# workflow and prints its normalised steps and its graph.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --editable .
.venv/bin/flowledger validate examples/order_fulfilment.yaml
echo
.venv/bin/flowledger graph examples/approval_graph.json
