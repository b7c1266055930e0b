#!/usr/bin/env bash
# Set up the environment with the test requirements (including the web app's, for its browser tests) and run the
# whole test suite. The browser tests need Chromium and its driver: installed here with apt-get where missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver
  else
    echo "warning: cannot install chromium (not root, no sudo): the browser tests will be skipped" >&2
  fi
fi
.venv/bin/python -m pytest -q "$@"
