"""How a MOVi-F training sample picks its frames and its tracks (the reference's rules).

Frames (``frame_sampling``):
  * ``uniform``: ``T`` frames with stride ``int(frame_sample_ratio)`` from a random start;
  * ``uniform_mixed``: the same with a stride of 1 or 2, chosen with equal probability;
  * ``random``: a window of ``int(frame_sample_ratio * T)`` consecutive frames at a random start, then ``T`` distinct
    frames of it at random, kept in temporal order (``random_frames_sorted: false``: in the order drawn, as the
    reference, which thus trains on temporally shuffled clips).
Where the reference would run out of frames (a stride too long for the video, a window longer than it), the stride
or window is shortened so that ``T`` frames are always returned.

Tracks: those visible in the first or the middle frame; when fewer than ``N``, also those visible in the first-
and last-quarter frames (``T // 4`` and ``-T // 4``); then at most ``N`` of them in random order.
"""

from __future__ import annotations

import numpy as np
import torch

FRAME_SAMPLINGS = ("uniform", "random", "uniform_mixed")


def sample_frame_indices(
    total: int, num_frames: int, mode: str, ratio: float, rng: np.random.Generator, sort_random: bool = True
) -> np.ndarray:
    """Indices of ``num_frames`` frames out of ``total``, increasing in time (``random`` frames stay in the order
    drawn, as in the reference, when ``sort_random`` is False)."""
    if mode not in FRAME_SAMPLINGS:
        raise ValueError(f"frame_sampling must be one of {FRAME_SAMPLINGS}, got {mode!r}")
    if total < num_frames:
        raise ValueError(f"the video has {total} frames, fewer than T={num_frames}")
    if mode == "random":
        window = min(total, max(num_frames, int(ratio * num_frames)))
        start = int(rng.integers(0, total - window)) if window < total else 0
        drawn = rng.choice(window, num_frames, replace=False)
        return start + (np.sort(drawn) if sort_random else drawn)
    stride = int(rng.choice([1, 2])) if mode == "uniform_mixed" else max(1, int(ratio))
    if num_frames == total:
        return np.arange(total)
    if num_frames > 1:
        stride = min(stride, (total - 1) // (num_frames - 1))
    span = num_frames * stride
    start = int(rng.integers(0, total - span)) if span < total else 0
    return start + stride * np.arange(num_frames)


def candidate_tracks(visible: torch.Tensor, wanted: int) -> torch.Tensor:
    """Sorted indices of tracks visible at the first or middle frame, topped up from the quarter frames."""
    num_frames = visible.shape[0]
    chosen = torch.cat([visible[0].nonzero()[:, 0], visible[num_frames // 2].nonzero()[:, 0]]).unique()
    if len(chosen) < wanted:
        quarters = [visible[num_frames // 4].nonzero()[:, 0], visible[(-num_frames) // 4].nonzero()[:, 0]]
        chosen = torch.cat([chosen, *quarters]).unique()
    return chosen


def select_tracks(visible: torch.Tensor, wanted: int, rng: np.random.Generator) -> torch.Tensor:
    """At most ``wanted`` candidate track indices, in random order."""
    chosen = candidate_tracks(visible, wanted)
    order = torch.from_numpy(rng.permutation(len(chosen)))
    return chosen[order[:wanted]]
