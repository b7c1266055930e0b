#!/usr/bin/env bash
# Set up the environment with the test requirements (including the web app's, for its browser tests, and the ONNX
# export's) and run the whole test suite. The browser tests need Chromium and its driver: installed with apt-get
# where missing (quietly).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
bash scripts/install_browser.sh
.venv/bin/python -m pytest -q "$@"
