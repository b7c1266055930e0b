"""Checks of user-facing inputs, so that bad shapes or values fail early with a message naming the problem."""

from __future__ import annotations

import warnings

import torch


class InputError(ValueError):
    """A video or query tensor that the tracker cannot use."""


def check_video(video: torch.Tensor, name: str = "video") -> None:
    """A (B, T, 3, H, W) floating-point tensor with values in 0..255."""
    if not isinstance(video, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(video).__name__}")
    if video.dim() != 5 or video.shape[2] != 3:
        raise InputError(f"{name} must have shape (B, T, 3, H, W), got {tuple(video.shape)}")
    if not video.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor with values in 0..255, got dtype {video.dtype}")
    if min(video.shape) == 0:
        raise InputError(f"{name} is empty: shape {tuple(video.shape)}")
    check_pixel_values(video, name)


def check_pixel_values(video: torch.Tensor, name: str = "video") -> bool:
    """Pixels must be finite; a float video whose values all lie in [0, 1] is almost surely a 0..1 video given to
    a tracker that expects 0..255, so it gets a warning. Returns whether it warned."""
    finite = torch.isfinite(video)
    if not bool(finite.all()):
        raise InputError(f"{name} contains {int((~finite).sum())} NaN or infinite pixel value(s)")
    if video.is_floating_point() and float(video.max()) <= 1.0 and bool((video != 0).any()):
        warnings.warn(f"{name} values all lie in [0, 1], but the tracker expects 0..255: multiply by 255 "
                      "(tracking it as it is gives wrong results)", UserWarning, stacklevel=3)
        return True
    return False


def check_queries(queries: torch.Tensor, batch: int, num_frames: int | None, height: int, width: int,
                  allow_outside: bool = False) -> None:
    """(B, N, 3) queries (t, x, y): integer t in [0, T), x in [0, W], y in [0, H] (pixels of the input video).

    ``num_frames`` None means a stream of unknown length, where only t >= 0 is checked. ``allow_outside`` accepts
    points outside the frame (benchmarks such as Dynamic Replica query points that are off-screen; their features
    are then sampled at the nearest border, as in the reference).
    """
    if not isinstance(queries, torch.Tensor):
        raise InputError(f"queries must be a torch.Tensor, got {type(queries).__name__}")
    if queries.dim() != 3 or queries.shape[-1] != 3 or queries.shape[0] != batch:
        raise InputError(f"queries must have shape (B={batch}, N, 3) as (t, x, y), got {tuple(queries.shape)}")
    if queries.shape[1] == 0:
        raise InputError("queries is empty: give at least one (t, x, y) query point")
    if not torch.isfinite(queries).all():
        raise InputError("queries contain NaN or infinite values")
    t, x, y = queries[..., 0], queries[..., 1], queries[..., 2]
    if (t != t.round()).any() or (t < 0).any():
        raise InputError(f"query times must be non-negative integers, got {t[(t != t.round()) | (t < 0)].tolist()}")
    if num_frames is not None and (t >= num_frames).any():
        late = t[t >= num_frames].long().tolist()
        raise InputError(f"query times {late} are at or after the last frame (the video has {num_frames} frames)")
    outside = (x < 0) | (x > width) | (y < 0) | (y > height)
    if outside.any() and not allow_outside:
        bad = queries[outside][:5, 1:].tolist()
        raise InputError(
            f"{int(outside.sum())} query point(s) lie outside the {width}x{height} frame (x in [0, {width}], "
            f"y in [0, {height}]); first ones (x, y): {bad}. Pass allow_outside_queries=True to the Predictor to "
            "track them anyway"
        )
