#!/usr/bin/env bash
# Install Chromium and its driver with apt-get where they are missing (for the browser tests). apt's and dpkg's
# hundreds of lines go to a log file; only its last lines are shown, and only if the install fails.
set -uo pipefail
if { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "warning: cannot install chromium (not root, no sudo): the browser tests will be skipped" >&2
  exit 0
fi
LOG="$(mktemp "${TMPDIR:-/tmp}/apt-chromium.XXXXXX.log")"
echo "installing chromium and chromium-driver with apt-get (log: $LOG) ..."
if "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOG" 2>&1 &&
   "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >>"$LOG" 2>&1; then
  echo "installed chromium and chromium-driver"
  rm -f "$LOG"
else
  echo "warning: apt-get could not install chromium (the browser tests will be skipped); last lines of $LOG:" >&2
  tail -n 5 "$LOG" >&2
fi
