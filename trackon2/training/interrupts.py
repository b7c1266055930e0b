"""SIGINT (Ctrl-C) and SIGTERM (cluster pre-emption, torchrun shutting down) end training cleanly.

The first signal only raises a flag: the trainer finishes the current iteration, saves a checkpoint and stops with
``TrainingInterrupted``. A second Ctrl-C (SIGINT) stops at once; a repeated SIGTERM is ignored, since schedulers and
a dying torchrun agent may send it more than once and the save must not be cut short. (Ctrl-C under torchrun
delivers SIGINT from the terminal and then SIGTERM from the agent; that pair still saves.) Under torchrun every rank agrees on the flag
each iteration, so all ranks stop after the same iteration.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import torch
import torch.distributed as dist

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StopRequests:
    """Records SIGINT/SIGTERM while installed (a context manager; only the main thread can install handlers)."""

    def __init__(self) -> None:
        self.signal_number = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for number in HANDLED_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if number == self.signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal_number:
            return
        self.signal_number = number
        print(f"\n{signal.Signals(number).name} received: finishing the current iteration to save a checkpoint "
              "(Ctrl-C again stops at once)", file=sys.stderr, flush=True)

    def agreed(self, device: torch.device, distributed: bool) -> int:
        """The signal number if any rank was asked to stop (0 otherwise), the same on every rank."""
        if not distributed or not dist.is_initialized():
            return self.signal_number
        flag = torch.tensor([self.signal_number], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())
