"""One user's live webcam stream in the web app: its own tracker stream, clicked points and frame rate."""

from __future__ import annotations

import contextlib
import copy
import time
from collections import deque
from typing import Callable

import numpy as np
import torch

from model.inputs import InputError
from runtime.predictor import Predictor
from video.drawing import TrailRenderer

FPS_WINDOW_SECONDS = 3.0
AutocastFactory = Callable[[], contextlib.AbstractContextManager]


def session_predictor(shared: Predictor) -> Predictor:
    """A predictor with its own stream state that shares ``shared``'s weights (one per browser session)."""
    own = copy.copy(shared)
    own.reset()
    return own


class LiveSession:
    """Tracks webcam frames one at a time; points clicked on the shown frame start on the next frame processed."""

    def __init__(self, shared: Predictor, make_autocast: AutocastFactory = contextlib.nullcontext):
        self.predictor = session_predictor(shared)
        self.make_autocast = make_autocast
        self.renderer = TrailRenderer()
        self.frame_size: tuple[int, int] | None = None
        self.frames_processed = 0
        self._done_at: deque[float] = deque()

    @property
    def point_count(self) -> int:
        return len(self.predictor.query_ids)

    @property
    def fps(self) -> float:
        """Frames processed per second over the last few seconds."""
        if len(self._done_at) < 2:
            return 0.0
        return (len(self._done_at) - 1) / max(self._done_at[-1] - self._done_at[0], 1e-6)

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Track one RGB uint8 (H, W, 3) frame and return it with the tracks drawn (a new size restarts)."""
        size = frame.shape[:2]
        if size != self.frame_size:
            self.predictor.reset()
            self.frame_size = size
        tensor = torch.from_numpy(np.array(frame[..., :3])).permute(2, 0, 1)
        with self.make_autocast():
            result = self.predictor.track_frame(tensor)
        self.frames_processed += 1
        now = time.monotonic()
        self._done_at.append(now)
        while now - self._done_at[0] > FPS_WINDOW_SECONDS:
            self._done_at.popleft()
        return self.renderer.draw(frame[..., :3], result.ids, result.points.float().cpu().numpy(),
                                  result.visible.cpu().numpy())

    def add_point(self, x: float, y: float) -> None:
        if self.frame_size is None:
            raise InputError("start the camera first: points are clicked on the live image")
        height, width = self.frame_size
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(f"point ({x:.0f}, {y:.0f}) is outside the {width}x{height} image")
        self.predictor.add_queries(torch.tensor([[float(x), float(y)]]))

    def clear(self) -> None:
        self.predictor.remove_queries(self.predictor.query_ids)

    def status(self) -> str:
        return (f"**live**: {self.fps:.1f} frames/s · {self.point_count} point(s) · "
                f"{self.frames_processed} frame(s) processed")
