#!/usr/bin/env bash
# Create .venv (if missing) and install the project's requirements into it.
# TORCH_SPEC picks the torch build: the default 2.13.0 is the CPU build on the CPU machines; GPU users may set
# e.g. TORCH_SPEC="torch==2.13.0" with a CUDA index, or install torch themselves before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
REQS="${1:-requirements.txt}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/pip install --quiet -r "$REQS"
