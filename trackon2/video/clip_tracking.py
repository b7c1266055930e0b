"""Tracking a decoded clip (frames in memory) through a ``Predictor`` stream, forward only or in both directions:
what the web app's Video tab and ``demo.py --backward`` run.

Forward, the frames are streamed as a live source would be (``track_live``: per-frame confidence, the query-frame
rule of ``runtime.query_frame``); backward, the same stream runs over the time-reversed clip up to the latest query
frame (``runtime.two_way``), so every query also has a track on the frames before its own.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch

from trackon2.runtime.predictor import Predictor
from trackon2.runtime.two_way import BackwardPlan, track_two_way
from trackon2.video.live_source import FrameListSource
from trackon2.video.live_tracking import track_live

OUTPUTS = ("tracks", "visibility", "confidence")


def frames_to_track(num_frames: int, queries: np.ndarray, backward: bool) -> int:
    """How many frames the run steps: the clip, plus frames 0..latest query frame when tracking backward."""
    plan = BackwardPlan.of(torch.from_numpy(np.asarray(queries, np.float32).reshape(-1, 3))) if backward else None
    return num_frames + (plan.num_frames if plan is not None else 0)


def track_frames(frames: list[np.ndarray], queries: np.ndarray, predictor: Predictor, backward: bool = True,
                 autocast: contextlib.AbstractContextManager | None = None,
                 on_frame: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Track (N, 3) queries (t, x, y) through RGB uint8 frames (H, W, 3); ``on_frame(done)`` counts the frames
    stepped over both passes (``frames_to_track`` of them).

    Returns queries (N, 3), tracks (T, N, 2) in pixels, visibility (T, N) and confidence (T, N). Forward only, a
    query has no track before its frame ((0, 0), not visible, confidence 0); with ``backward`` it has one from
    frame 0.
    """
    done = [0]

    def count(_: int) -> None:
        done[0] += 1
        if on_frame is not None:
            on_frame(done[0])

    def stream(video: torch.Tensor, points: torch.Tensor, _origin: tuple[int, int] | None) -> tuple[torch.Tensor, ...]:
        clip = list(video[0].numpy())
        recording = track_live(FrameListSource(clip), predictor, lambda height, width: points[0].numpy(),
                               keep_overlay=False, autocast=autocast, on_frame=count)
        arrays = recording.as_arrays()
        return tuple(torch.from_numpy(arrays[key])[None] for key in OUTPUTS)

    video = torch.from_numpy(np.stack(frames))[None]
    given = torch.from_numpy(np.asarray(queries, np.float32).reshape(-1, 3))[None]
    outputs = track_two_way(stream, video, given) if backward else stream(video, given, None)
    return {"queries": given[0].numpy(), **{key: value[0].numpy() for key, value in zip(OUTPUTS, outputs)}}
