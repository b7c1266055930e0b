"""Live frame sources (camera index, rtsp/http stream, or a file played in real time) that drop stale frames.

A background thread reads the source as fast as it delivers frames and keeps only the newest one, so a consumer
that is slower than the source always gets the latest frame and never works through a backlog; the frames it
never took are counted as dropped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trackon2.video.files import VideoReadError

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")


@dataclass
class LiveFrame:
    """A frame taken from a live source: RGB uint8 (H, W, 3) and its 0-based index in the source."""

    image: np.ndarray
    index: int


def is_live_source(video: str, realtime: bool) -> bool:
    """Whether ``--video`` names a camera index or a stream URL, or a file to be played as if live."""
    return realtime or video.isdigit() or video.lower().startswith(STREAM_PREFIXES)


def _open_capture(video: str):
    """An OpenCV capture for a camera index, a stream URL or a file; a clear error when it cannot be opened."""
    import cv2

    if video.isdigit():
        capture, what = cv2.VideoCapture(int(video)), f"camera {video}"
    elif video.lower().startswith(STREAM_PREFIXES):
        capture, what = cv2.VideoCapture(video), f"stream {video}"
    else:
        if not Path(video).is_file():
            raise VideoReadError(f"video not found: {video}")
        capture, what = cv2.VideoCapture(video), video
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(f"could not open {what} with OpenCV")
    return capture


class FrameListSource:
    """Frames already in memory, served in order with the ``LiveSource`` interface (nothing is dropped)."""

    def __init__(self, frames: list[np.ndarray], name: str = "video"):
        self.name = name
        self._frames = frames
        self._next = 0

    def next_frame(self, timeout: float | None = None) -> LiveFrame | None:
        if self._next >= len(self._frames):
            return None
        self._next += 1
        return LiveFrame(self._frames[self._next - 1], self._next - 1)


class LiveSource:
    """The newest frame of a live source; ``realtime`` paces a file at its own frame rate as a camera would.

    Use as a context manager; ``next_frame`` blocks until a frame newer than the last one taken arrives and
    returns None when the source has ended.
    """

    def __init__(self, video: str, realtime: bool = False):
        self.name = video
        self._capture = _open_capture(video)
        reported_fps = float(self._capture.get(5) or 0.0)  # cv2.CAP_PROP_FPS
        self.fps = reported_fps if 0 < reported_fps < 1000 else 30.0
        self._pace = realtime and not video.isdigit()  # cameras pace themselves; a URL may name a file
        self._condition = threading.Condition()
        self._latest: LiveFrame | None = None
        self._taken = -1
        self._ended = False
        self._stop = threading.Event()
        self.frames_read = 0
        self.frames_taken = 0
        self._thread = threading.Thread(target=self._read_loop, name=f"live-source:{video}", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        import cv2

        start = time.monotonic()
        index = 0
        try:
            while not self._stop.is_set():
                if self._pace:
                    delay = start + index / self.fps - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                ok, bgr = self._capture.read()
                if not ok:
                    break
                frame = LiveFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index)
                with self._condition:
                    self._latest = frame
                    self.frames_read = index + 1
                    self._condition.notify_all()
                index += 1
        finally:
            with self._condition:
                self._ended = True
                self._condition.notify_all()

    def _has_fresh_frame(self) -> bool:
        return self._latest is not None and self._latest.index > self._taken

    def next_frame(self, timeout: float | None = None) -> LiveFrame | None:
        """The newest frame not yet taken (waiting for one), or None once the source has ended."""
        with self._condition:
            self._condition.wait_for(lambda: self._has_fresh_frame() or self._ended, timeout=timeout)
            if not self._has_fresh_frame():
                return None
            self._taken = self._latest.index
            self.frames_taken += 1
            return self._latest

    @property
    def frames_dropped(self) -> int:
        """Frames the source delivered that were replaced by a newer one before they were taken."""
        return max(self._taken + 1 - self.frames_taken, 0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._capture.release()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
