"""SIGINT (Ctrl-C) and SIGTERM end an evaluation at once with a line saying what was kept and how to resume.

Nothing finished is lost either way (each video is written to the partial file as soon as it is done); what the
user needs is to hear so, rather than a silent exit or a traceback.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Iterator

from trackon2.evaluation.partial import count_finished, partial_paths

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class EvaluationInterrupted(Exception):
    """The evaluation was stopped by a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


def _raise(number: int, frame: FrameType | None) -> None:
    raise EvaluationInterrupted(number)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT / SIGTERM into ``EvaluationInterrupted`` while inside (only the main thread installs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise) for number in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def interrupted_message(signal_name: str, output_json: str | Path | None) -> str:
    """What was kept by an interrupted run, and how to go on."""
    if output_json is None:
        return (f"interrupted by {signal_name}: without --output_json nothing was kept; give --output_json OUT to "
                "keep each finished video, so that a rerun resumes")
    files = ", ".join(str(path) for path in partial_paths(output_json)) or "no file (no video had finished)"
    return (f"interrupted by {signal_name}: {count_finished(output_json)} finished video(s) are kept in {files}; "
            "rerun the same command to resume")
