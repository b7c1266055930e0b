"""The verifier ensemble: per point and frame, the candidate the verifier ranks highest; visibility by majority.

As the reference's verifier predictor: the selected track is the argmax of the verifier's rank logits over the
candidates (on a tie, the first listed candidate), and a point is visible when strictly more than
``majority_ratio`` (0.5) of the candidates say so (so an even split is not visible).
"""

from __future__ import annotations

from pathlib import Path

import torch

from trackon2.model.inputs import InputError
from trackon2.model.verifier.config import VerifierConfig
from trackon2.model.verifier.verifier import FRAMES_PER_PASS, Verifier

MAJORITY_RATIO = 0.5


def majority_visibility(candidate_visibility: torch.Tensor, ratio: float = MAJORITY_RATIO) -> torch.Tensor:
    """(B, C, T, N) -> (B, T, N) bool: visible where the fraction of candidates saying visible exceeds ``ratio``."""
    return candidate_visibility.float().mean(dim=1) > ratio


def gather_choice(candidate_tracks: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """(B, C, T, N, 2) candidates and (B, T, N) indices into C -> (B, T, N, 2) chosen tracks."""
    index = choice.unsqueeze(1).unsqueeze(-1).expand(-1, 1, -1, -1, 2)
    return torch.gather(candidate_tracks, 1, index).squeeze(1)


class VerifierEnsemble:
    """Re-ranks C candidate trackers' predictions with a verifier (``select``, the ensemble interface)."""

    name = "verifier"

    def __init__(self, verifier: Verifier | str | Path, config: VerifierConfig | str | Path | None = None,
                 majority_ratio: float = MAJORITY_RATIO, frames_per_pass: int = FRAMES_PER_PASS,
                 device: str | torch.device | None = None):
        """``verifier`` a Verifier module, or a checkpoint (file, ``verifier`` for the released weights, ``none``
        for random weights) built with ``config`` (default: the released architecture)."""
        if not isinstance(verifier, Verifier):
            from trackon2.model.verifier.checkpoint import build_verifier

            verifier = build_verifier(verifier, config, device)
        elif device is not None:
            verifier = verifier.to(device)
        if not 0 <= majority_ratio < 1:
            raise ValueError(f"majority_ratio must be in [0, 1), got {majority_ratio}")
        self.verifier = verifier.eval()
        self.majority_ratio = majority_ratio
        self.frames_per_pass = frames_per_pass

    @torch.no_grad()
    def rank(self, video: torch.Tensor, queries: torch.Tensor, candidate_tracks: torch.Tensor) -> torch.Tensor:
        """The verifier's rank logits (B, T, N, C) of candidate tracks (B, C, T, N, 2), on the verifier's device."""
        if not isinstance(candidate_tracks, torch.Tensor) or candidate_tracks.dim() != 5:
            shape = tuple(candidate_tracks.shape) if isinstance(candidate_tracks, torch.Tensor) else None
            raise InputError(f"candidate_tracks must have shape (B, C, T, N, 2), got {shape}")
        device = self.verifier.time_emb.device
        tracks = candidate_tracks.permute(0, 2, 3, 1, 4).to(device)  # (B, T, N, C, 2), the verifier's layout
        return self.verifier(video.to(device), tracks, queries.to(device), frames_per_pass=self.frames_per_pass)

    def choose(self, video: torch.Tensor, queries: torch.Tensor, candidate_tracks: torch.Tensor) -> torch.Tensor:
        """(B, T, N) index of the chosen candidate per point and frame (the first of equal top scores)."""
        return self.rank(video, queries, candidate_tracks).argmax(dim=-1).to(candidate_tracks.device)

    def select(self, video: torch.Tensor, queries: torch.Tensor, candidate_tracks: torch.Tensor,
               candidate_visibility: torch.Tensor, gt_tracks: torch.Tensor | None = None,
               gt_visibility: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, 3, H, W) 0..255, queries (B, N, 3) (t, x, y), candidate_tracks (B, C, T, N, 2) and
        candidate_visibility (B, C, T, N) -> tracks (B, T, N, 2), visibility (B, T, N) bool. The ground truth is
        not used (the interface passes it to every ensemble)."""
        if tuple(candidate_visibility.shape) != tuple(candidate_tracks.shape[:4]):
            raise InputError(f"candidate_visibility must have shape {tuple(candidate_tracks.shape[:4])} "
                             f"(B, C, T, N), got {tuple(candidate_visibility.shape)}")
        choice = self.choose(video, queries, candidate_tracks)
        return gather_choice(candidate_tracks, choice), majority_visibility(candidate_visibility, self.majority_ratio)
