"""One user's live webcam stream in the web app: its own tracker stream, clicked points and frame rate."""

from __future__ import annotations

import contextlib
import copy
import time
from collections import deque
from typing import Callable

import cv2
import numpy as np
import torch

from trackon2.model.inputs import InputError
from trackon2.runtime.predictor import Predictor
from trackon2.video.drawing import TrailRenderer
from trackon2.webapp.live_record import LiveTracks

FPS_WINDOW_SECONDS = 3.0
NOTICE_SECONDS = 4.0
MARKER_RADIUS = 7  # pixels of the shown (enlarged) image
AutocastFactory = Callable[[], contextlib.AbstractContextManager]


def session_predictor(shared: Predictor) -> Predictor:
    """A predictor with its own stream state that shares ``shared``'s weights (one per browser session)."""
    own = copy.copy(shared)
    own.reset()
    return own


def display_scale(height: int, view_height: int) -> float:
    """How much a frame is enlarged to fill a view ``view_height`` pixels high (never shrunk: the page does)."""
    return max(view_height / height, 1.0)


class LiveSession:
    """Tracks webcam frames one at a time; points clicked on the shown frame start on the next frame processed.

    The shown frame is enlarged to ``view_height`` (the webcam preview's height), with markers drawn at that size;
    clicks on it are mapped back to the camera's pixels. ``tracks`` keeps everything tracked, for the download."""

    def __init__(self, shared: Predictor, make_autocast: AutocastFactory = contextlib.nullcontext,
                 view_height: int = 0):
        self.predictor = session_predictor(shared)
        self.make_autocast = make_autocast
        self.view_height = view_height
        self.renderer = TrailRenderer(radius=MARKER_RADIUS)
        self.frame_size: tuple[int, int] | None = None
        self.scale = 1.0
        self.frames_processed = 0
        self.tracks = LiveTracks()
        self._notice = ("", 0.0)
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
            self.tracks.clear()
            self.frame_size = size
            self.scale = display_scale(size[0], self.view_height)
        rgb = np.ascontiguousarray(frame[..., :3])
        with self.make_autocast():
            result = self.predictor.track_frame(rgb)
        self.tracks.add_frame(result)
        self.frames_processed += 1
        now = time.monotonic()
        self._done_at.append(now)
        while now - self._done_at[0] > FPS_WINDOW_SECONDS:
            self._done_at.popleft()
        if self.scale != 1.0:
            height, width = size
            rgb = cv2.resize(rgb, (round(width * self.scale), round(height * self.scale)),
                             interpolation=cv2.INTER_LINEAR)
        points = result.points.float().cpu().numpy() * self.scale
        return self.renderer.draw(rgb, result.ids, points, result.visible.cpu().numpy())

    def add_point(self, x: float, y: float) -> None:
        """Add a point clicked at (x, y) on the shown (enlarged) image."""
        if self.frame_size is None:
            raise InputError("start the camera first: points are clicked on the live image")
        height, width = self.frame_size
        x, y = x / self.scale, y / self.scale
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(f"point ({x:.0f}, {y:.0f}) is outside the {width}x{height} image")
        (query_id,) = self.predictor.add_queries(torch.tensor([[float(x), float(y)]]))
        self.tracks.add_query(query_id, self.frames_processed, float(x), float(y))

    def clear(self) -> None:
        self.predictor.remove_queries(self.predictor.query_ids)

    def notify(self, message: str) -> None:
        """Show ``message`` after the live numbers for a few seconds (the status is rewritten on every frame)."""
        self._notice = (message, time.monotonic() + NOTICE_SECONDS)

    def status(self) -> str:
        line = (f"**live**: {self.fps:.1f} frames/s · {self.point_count} point(s) · "
                f"{self.frames_processed} frame(s) processed")
        message, until = self._notice
        return f"{line} · {message}" if time.monotonic() < until else line
