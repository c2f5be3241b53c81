#!/usr/bin/env bash
# The main command: set up on a fresh machine and run the local stack on loopback until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
exec .venv/bin/raylens up "$@"
