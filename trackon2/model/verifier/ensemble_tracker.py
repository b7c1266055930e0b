"""Several trackers and a verifier ensemble combined into one tracker (a video and queries in, tracks out)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from trackon2.model.inputs import InputError, check_video
from trackon2.model.verifier.ensemble import VerifierEnsemble, gather_choice, majority_visibility

Tracker = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EnsembleResult:
    """The ensemble's tracks and visibility, the candidates it chose from and its choice per point and frame."""

    tracks: torch.Tensor  # (B, T, N, 2)
    visibility: torch.Tensor  # (B, T, N) bool
    candidate_names: list[str]  # the trackers whose predictions were candidates, in order
    candidate_tracks: torch.Tensor  # (B, C, T, N, 2)
    candidate_visibility: torch.Tensor  # (B, C, T, N) bool
    choice: torch.Tensor  # (B, T, N) index into candidate_names
    scores: torch.Tensor  # (B, T, N, C) the verifier's rank logits

    @property
    def choice_probability(self) -> torch.Tensor:
        """(B, T, N) softmax weight of the chosen candidate among the verifier's scores."""
        return self.scores.float().softmax(-1).gather(-1, self.choice.unsqueeze(-1).to(self.scores.device))[..., 0]


class EnsembleTracker:
    """Runs every candidate tracker on the whole video, then lets the verifier pick per point and frame.

    A tracker is any callable ``tracker(video, queries) -> (tracks, visibility)`` with the shapes of ``__call__``
    (a ``Predictor`` is one); it must not modify its inputs. A tracker whose tracks hold NaN is left out with a
    warning, as in the reference. The verifier sees the whole video, so this tracker is offline (not a stream).
    """

    def __init__(self, trackers: Mapping[str, Tracker] | Sequence[Tracker], ensemble: VerifierEnsemble):
        named = dict(trackers) if isinstance(trackers, Mapping) else {f"tracker{i}": t for i, t in enumerate(trackers)}
        if not named:
            raise ValueError("an ensemble needs at least one candidate tracker")
        self.trackers = named
        self.ensemble = ensemble

    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, 3, H, W) 0..255 and queries (B, N, 3) (t, x, y) in pixels -> tracks (B, T, N, 2),
        visibility (B, T, N) bool."""
        result = self.track(video, queries)
        return result.tracks, result.visibility

    @torch.no_grad()
    def track(self, video: torch.Tensor, queries: torch.Tensor) -> EnsembleResult:
        """``__call__`` with the candidates and the verifier's choice."""
        if isinstance(video, torch.Tensor) and not video.is_floating_point() and video.dim() == 5:
            video = video.float()
        check_video(video)
        names, tracks, visibility = [], [], []
        for name, tracker in self.trackers.items():
            predicted, visible = tracker(video, queries.clone())
            if torch.isnan(predicted).any():
                warnings.warn(f"{name} predicted NaN positions: it is left out of the ensemble", RuntimeWarning,
                              stacklevel=2)
                continue
            names.append(name)
            tracks.append(predicted.to(video.device, video.dtype))
            visibility.append(visible.to(video.device).bool())
        if not names:
            raise InputError(f"every candidate tracker ({', '.join(self.trackers)}) predicted NaN positions")
        candidate_tracks = torch.stack(tracks, dim=1)
        candidate_visibility = torch.stack(visibility, dim=1)
        scores = self.ensemble.rank(video, queries, candidate_tracks)
        choice = scores.argmax(dim=-1).to(candidate_tracks.device)  # the first of equal top scores
        return EnsembleResult(tracks=gather_choice(candidate_tracks, choice),
                              visibility=majority_visibility(candidate_visibility, self.ensemble.majority_ratio),
                              candidate_names=names, candidate_tracks=candidate_tracks,
                              candidate_visibility=candidate_visibility, choice=choice, scores=scores)
