#!/usr/bin/env bash
# Set up the environment with the test requirements and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
.venv/bin/python -m pytest -q "$@"
