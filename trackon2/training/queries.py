"""Training queries drawn from the ground truth, as the reference's ``get_queries``.

The first quarter of the tracks (``N // 4``) is queried at a uniformly random frame where the point is visible; the
other tracks at their first visible frame. Every track must be visible somewhere (the MOVi-F reader guarantees it).
"""

from __future__ import annotations

import torch


def sample_queries(tracks: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
    """tracks (B, T, N, 2) xy pixels, visibility (B, T, N) bool -> queries (B, N, 3) as (t, x, y).

    Vectorised over the batch and the tracks: a random visible frame is the argmax of uniform noise restricted to
    the visible frames (ties have probability zero), the first visible frame is the argmax of the visibility mask.
    """
    if tracks.dim() != 4 or tracks.shape[-1] != 2 or visibility.shape != tracks.shape[:3]:
        raise ValueError(f"expected tracks (B, T, N, 2) and visibility (B, T, N), got {tuple(tracks.shape)} and "
                         f"{tuple(visibility.shape)}")
    visible = visibility.bool()
    if not bool(visible.any(dim=1).all()):
        raise ValueError("every track must be visible in at least one frame to be queried")
    num_tracks = tracks.shape[2]
    first_visible = visible.to(torch.uint8).argmax(dim=1)  # (B, N): the first True along T
    noise = torch.rand(visible.shape, device=visible.device)
    random_visible = torch.where(visible, noise + 1.0, torch.zeros_like(noise)).argmax(dim=1)  # (B, N)
    num_random = num_tracks // 4
    use_random = torch.arange(num_tracks, device=visible.device) < num_random  # (N,)
    times = torch.where(use_random[None], random_visible, first_visible)  # (B, N)
    points = torch.gather(tracks, 1, times[:, None, :, None].expand(-1, 1, -1, 2)).squeeze(1)  # (B, N, 2)
    return torch.cat([times[..., None].to(tracks.dtype), points], dim=2)
