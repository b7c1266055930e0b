"""The one item type every evaluation reader gives (``reader.sample(index)``), whatever the benchmark.

Units and shapes (T frames of H x W pixels, N tracks)::

    video    float32 (T, 3, H, W) RGB in [0, 255], the frames the model sees (already at the benchmark's size)
    queries  float32 (N, 3) as (t, x, y): start frame and pixel position in ``video``
    tracks   float32 (T, N, 2) target (x, y) pixels in ``video``
    visible  bool (T, N) target visibility
    valid    bool (T, N) where the target is annotated (all True except PointOdyssey's invalid points)
    name     str, the video's name in messages and result files
    annotations  dict of further (T, N) ground-truth arrays a benchmark's metrics read (EgoPoints' flags)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EvalSample:
    video: torch.Tensor
    queries: torch.Tensor
    tracks: torch.Tensor
    visible: torch.Tensor
    valid: torch.Tensor
    name: str
    annotations: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the video."""
        return int(self.video.shape[-2]), int(self.video.shape[-1])


def first_visible_queries(tracks: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """(N, 3) queries (t, x, y) at each track's first visible frame (frame 0 if never visible)."""
    first = torch.argmax(visible.to(torch.uint8), dim=0)  # (N,)
    points = tracks[first, torch.arange(tracks.shape[1])]  # (N, 2)
    return torch.cat([first[:, None].to(tracks.dtype), points], dim=1)
