#!/usr/bin/env bash
# The test command: set up on a fresh machine, lint, then run every test against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
