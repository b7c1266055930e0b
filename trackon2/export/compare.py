"""The ONNX runtime against the PyTorch Predictor, stream for stream: the same frames, the same queries added
on several frames (and some removed), the same rules; reports the largest point difference and the visibility
decisions that differ. Used by the tests and by ``scripts/compare_onnx.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from trackon2.export.runtime import OnnxTracker
from trackon2.runtime.predictor import Predictor

# Frames on which queries are added in a comparison stream (count per frame), and removed (ids).
ADD_SCHEDULE = {0: 5, 3: 3, 8: 4, 15: 2, 20: 1}
REMOVE_SCHEDULE = {11: (1, 6)}


@dataclass
class StreamDifference:
    """Largest differences over a stream; ``flips`` lists (frame, id, ONNX probability) of visibility decisions
    that differ, ``far_flips`` those whose probability is not within ``rounding`` of delta_v."""

    frames: int = 0
    max_point_px: float = 0.0
    max_confidence: float = 0.0
    flips: list[tuple[int, int, float]] = field(default_factory=list)
    far_flips: list[tuple[int, int, float]] = field(default_factory=list)
    ids_equal: bool = True


def random_stream(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random video (T, H, W, 3) uint8: a drifting random texture, so that tracks move."""
    rng = np.random.default_rng(seed)
    texture = (rng.random((height + frames * 2, width + frames * 3, 3)) * 255).astype(np.uint8)
    return np.stack([texture[2 * t:2 * t + height, 3 * t:3 * t + width] for t in range(frames)])


def compare_streams(predictor: Predictor, tracker: OnnxTracker, video: np.ndarray, seed: int = 1,
                    rounding: float = 1e-4) -> StreamDifference:
    """Stream ``video`` through both with queries added per ``ADD_SCHEDULE`` and removed per ``REMOVE_SCHEDULE``."""
    rng = np.random.default_rng(seed)
    height, width = video.shape[1:3]
    predictor.reset()
    tracker.reset()
    result = StreamDifference()
    for t, frame in enumerate(video):
        if t in ADD_SCHEDULE:
            points = (rng.random((ADD_SCHEDULE[t], 2)) * [width - 1, height - 1]).astype(np.float32)
            predictor.add_queries(torch.from_numpy(points))
            tracker.add_queries(points)
        if t in REMOVE_SCHEDULE:
            predictor.remove_queries(list(REMOVE_SCHEDULE[t]))
            tracker.remove_queries(list(REMOVE_SCHEDULE[t]))
        expected = predictor.track_frame(frame)
        got = tracker.track_frame(frame)
        result.frames += 1
        result.ids_equal &= expected.ids == got.ids
        if not result.ids_equal:
            continue
        result.max_point_px = max(result.max_point_px, float(np.abs(expected.points.numpy() - got.points).max(
            initial=0.0)))
        result.max_confidence = max(result.max_confidence, float(np.abs(
            expected.confidence.numpy() - got.confidence).max(initial=0.0)))
        for index in np.flatnonzero(expected.visible.numpy() != got.visible):
            flip = (t, got.ids[index], float(got.visibility[index]))
            result.flips.append(flip)
            if abs(flip[2] - tracker.delta_v) > rounding:
                result.far_flips.append(flip)
    return result
