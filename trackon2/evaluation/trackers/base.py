"""What the evaluation calls a tracker and an ensemble.

A **tracker** is any callable ``tracker(video, queries) -> (tracks, visibility)``: video (B, T, 3, H, W) float in
[0, 255], queries (B, N, 3) float (t, x, y) in video pixels; tracks (B, T, N, 2) float video pixels, visibility
(B, T, N) bool. It may carry ``identity``, a JSON-serialisable dict of everything its predictions depend on (weights
file, settings); cached predictions are keyed by it.

An **ensemble** picks among the predictions of C candidate trackers: ``ensemble.select(video, queries,
candidate_tracks (B, C, T, N, 2), candidate_visibility (B, C, T, N), gt_tracks=None, gt_visibility=None) ->
(tracks, visibility)``. Only an upper-bound ensemble such as ``oracle`` reads the ground truth. An ensemble whose
choice depends on the video's position in the dataset (``random``) also has ``for_video(index) -> ensemble``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Tracker(Protocol):
    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class Ensemble(Protocol):
    def select(
        self,
        video: torch.Tensor,
        queries: torch.Tensor,
        candidate_tracks: torch.Tensor,
        candidate_visibility: torch.Tensor,
        gt_tracks: torch.Tensor | None = None,
        gt_visibility: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def tracker_identity(tracker: Any) -> dict[str, Any] | None:
    """The tracker's ``identity`` (what its predictions depend on), or None when it declares none."""
    identity = getattr(tracker, "identity", None)
    return dict(identity) if identity is not None else None


def ensemble_for_video(ensemble: Ensemble, index: int) -> Ensemble:
    """The ensemble as it chooses for the video at dataset position ``index``."""
    for_video = getattr(ensemble, "for_video", None)
    return for_video(index) if for_video is not None else ensemble
