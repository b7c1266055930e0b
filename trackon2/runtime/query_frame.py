"""What a track is on its own query frame: the rule shared by ``Predictor`` (whole videos and streams), the demo
and the web app.

On the frame a query starts, its track is the query point itself, visible (confidence 1 in streams): the user
gave that point, so it is returned as given. The model's own estimate there (a few tenths of a pixel off, and
occasionally "occluded") is the reference's behaviour; ``Predictor(..., pin_query_points=False)`` keeps it, and
the conformance tests and benchmarks use that. The TAP-Vid metrics never score the query frame, so evaluation
numbers are the same under both rules.
"""

from __future__ import annotations

import torch


def pin_whole_video(trajectory: torch.Tensor, visibility: torch.Tensor, queries: torch.Tensor) -> None:
    """Set each query's point on its query frame to the query, in place.

    trajectory (B, T, N, 2), visibility (B, T, N), queries (B, N, 3) as (t, x, y) in the trajectory's pixels.
    """
    batch, _, count = visibility.shape
    rows = torch.arange(batch, device=visibility.device)[:, None].expand(batch, count)
    columns = torch.arange(count, device=visibility.device)[None, :].expand(batch, count)
    frames = queries[..., 0].round().long().to(visibility.device)
    trajectory[rows, frames, columns] = queries[..., 1:].to(trajectory)
    visibility[rows, frames, columns] = True


def pin_stream_frame(points: torch.Tensor, visible: torch.Tensor, confidence: torch.Tensor,
                     starting: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One streamed frame whose last n queries start on it: those become ``starting`` (n, 2), visible, confidence 1.

    points (N, 2), visible (N,), confidence (N,); returns new tensors (the inputs are left as they are).
    """
    count = starting.shape[0]
    if count == 0:
        return points, visible, confidence
    points, visible, confidence = points.clone(), visible.clone(), confidence.clone()
    points[-count:] = starting.to(points)
    visible[-count:] = True
    confidence[-count:] = 1
    return points, visible, confidence
