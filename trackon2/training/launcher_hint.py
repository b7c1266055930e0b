"""Under torchrun, repeat the interruption line after torchrun itself has exited.

On Ctrl-C the torchrun agent stops the workers (which save and print how to resume) and then dies of the signal
with a long ``SignalException`` traceback, burying that line. Nothing a worker prints can come after the agent's
own output, so rank 0 leaves a small detached process that waits for the agent to exit and then prints the line
again, as the last one on the terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys

WAIT_LIMIT_S = 600  # give up if the agent outlives its workers this long

_WAITER = """
import os, sys, time
agent, message, deadline = int(sys.argv[1]), sys.argv[2], time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        os.kill(agent, 0)
    except ProcessLookupError:
        sys.stderr.write(message + "\\n")
        break
    time.sleep(0.05)
"""


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def repeat_after_launcher(message: str) -> None:
    """Print ``message`` to this process's stderr once torchrun (the parent process) has exited; no-op otherwise."""
    if not under_torchrun():
        return
    subprocess.Popen([sys.executable, "-c", _WAITER, str(os.getppid()), message, str(WAIT_LIMIT_S)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sys.stderr,
                     start_new_session=True)  # a second Ctrl-C must not stop it
