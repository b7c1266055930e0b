"""Tracking a live source frame by frame with ``Predictor.track_frame``: newest frame first, Ctrl-C keeps the results.

The loop always takes the newest frame of the source (stale ones are dropped, see ``LiveSource``), starts each
query on the processed frame whose number matches its t, draws the overlay, optionally shows it in a window,
and stops cleanly at the end of the source, after ``max_frames`` processed frames, on 'q' in the window, or on
Ctrl-C; everything tracked until then is returned.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from trackon2.model.inputs import InputError, check_queries
from trackon2.runtime.predictor import FrameTracks, Predictor
from trackon2.video.drawing import TrailRenderer
from trackon2.video.live_source import FrameListSource, LiveSource

WINDOW_TITLE = "Track-On2 (press q to stop)"


class PreviewWindow:
    """An OpenCV window for the overlay; turns itself off with a warning where no window can be shown."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        no_display = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                              or os.environ.get("WAYLAND_DISPLAY"))
        if enabled and no_display:
            print("warning: --show needs a display (DISPLAY is not set); tracking without a window", file=sys.stderr)
            self.enabled = False

    def show(self, rgb: np.ndarray) -> bool:
        """Show a frame; False when the user asked to stop (pressed q)."""
        if not self.enabled:
            return True
        import cv2

        try:
            cv2.imshow(WINDOW_TITLE, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            return (cv2.waitKey(1) & 0xFF) != ord("q")
        except cv2.error as err:
            print(f"warning: --show needs a display and an OpenCV build with GUI support "
                  f"(opencv-python, not -headless); tracking without a window ({' '.join(str(err).split())[:120]})",
                  file=sys.stderr)
            self.enabled = False
            return True

    def close(self) -> None:
        if self.enabled:
            import cv2

            cv2.destroyAllWindows()


@dataclass
class LiveRecording:
    """What a live run tracked: one entry per processed frame, queries in the order given."""

    queries: np.ndarray  # (N, 3) t (processed-frame number), x, y
    tracks: list[np.ndarray] = field(default_factory=list)  # each (N, 2)
    visibility: list[np.ndarray] = field(default_factory=list)  # each (N,)
    confidence: list[np.ndarray] = field(default_factory=list)  # each (N,)
    source_frames: list[int] = field(default_factory=list)  # index of each processed frame in the source
    overlay: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {
            "queries": self.queries,
            "tracks": np.stack(self.tracks),
            "visibility": np.stack(self.visibility),
            "confidence": np.stack(self.confidence),
            "source_frame": np.asarray(self.source_frames, dtype=np.int64),
        }

    @property
    def achieved_fps(self) -> float:
        return len(self.tracks) / self.seconds if self.seconds > 0 else 0.0


def track_live(source: LiveSource | FrameListSource, predictor: Predictor,
               make_queries: Callable[[int, int], np.ndarray], max_frames: int | None = None,
               keep_overlay: bool = True, show: bool = False, autocast: contextlib.AbstractContextManager | None = None,
               on_frame: Callable[[int], None] | None = None) -> LiveRecording:
    """Track ``source`` until it ends or is stopped; ``make_queries(height, width)`` gives the (N, 3) queries.

    ``on_frame(count)`` is called after each processed frame (progress reporting).
    """
    frame = source.next_frame()
    if frame is None:
        raise InputError(f"{source.name}: the source delivered no frame")
    height, width = frame.image.shape[:2]
    recording = LiveRecording(queries=make_queries(height, width))
    queries = recording.queries
    check_queries(torch.from_numpy(queries)[None], 1, None, height, width,
                  allow_outside=predictor.allow_outside_queries)
    renderer = TrailRenderer()
    window = PreviewWindow(show)
    predictor.reset()
    started = time.monotonic()
    try:
        while frame is not None and (max_frames is None or len(recording.tracks) < max_frames):
            step = len(recording.tracks)
            starting = queries[queries[:, 0] == step, 1:]
            if len(starting):
                predictor.add_queries(torch.from_numpy(np.ascontiguousarray(starting)))
            with autocast or contextlib.nullcontext():
                result = predictor.track_frame(torch.from_numpy(frame.image).permute(2, 0, 1))
            _record(recording, result, frame.index, queries)
            if on_frame is not None:
                on_frame(len(recording.tracks))
            if keep_overlay or window.enabled:
                drawn = renderer.draw(frame.image, result.ids, result.points.float().cpu().numpy(),
                                      result.visible.cpu().numpy())
                if keep_overlay:
                    recording.overlay.append(drawn)
                if not window.show(drawn):
                    break
            frame = source.next_frame()
    except KeyboardInterrupt:
        recording.interrupted = True
    finally:
        recording.seconds = time.monotonic() - started
        window.close()
    return recording


def _record(recording: LiveRecording, result: FrameTracks, source_index: int, queries: np.ndarray) -> None:
    """Store one frame's results in query order (queries not started yet: zeros, not visible)."""
    count = len(queries)
    order = np.argsort(queries[:, 0], kind="stable")[result.ids]  # ids are given in start order
    tracks = np.zeros((count, 2), np.float32)
    visible = np.zeros(count, bool)
    confidence = np.zeros(count, np.float32)
    tracks[order] = result.points.float().cpu().numpy()
    visible[order] = result.visible.cpu().numpy()
    confidence[order] = result.confidence.float().cpu().numpy()
    recording.tracks.append(tracks)
    recording.visibility.append(visible)
    recording.confidence.append(confidence)
    recording.source_frames.append(source_index)
