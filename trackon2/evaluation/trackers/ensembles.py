"""The bound ensembles of the reference's evaluation: ``oracle`` (per point and frame, the candidate closest to the
ground truth; visibility from the ground truth) and ``random`` (one candidate per video, round robin).

Both choose exactly as the reference's ``compute_oracle_prediction`` and its ``z = j % M`` baseline do: the oracle's
errors are float32 L2 distances on the CPU and ties go to the earliest candidate; ``random`` with seed ``s`` picks
candidate ``s % C`` for the first video of a batch (``s + b`` for the b-th), and ``for_video(j)`` is the ensemble
with seed ``s + j``, so the default seed 0 gives the reference's choice ``j % C`` for the video at dataset index j.
"""

from __future__ import annotations

import torch

from trackon2.evaluation.trackers.registry import TrackerRegistryError, register_tracker


def _check_candidates(candidate_tracks: torch.Tensor, candidate_visibility: torch.Tensor) -> None:
    if candidate_tracks.dim() != 5 or candidate_tracks.shape[-1] != 2:
        raise TrackerRegistryError(f"candidate_tracks must be (B, C, T, N, 2), got {tuple(candidate_tracks.shape)}")
    if candidate_visibility.shape != candidate_tracks.shape[:-1]:
        raise TrackerRegistryError(f"candidate_visibility must be (B, C, T, N) = {tuple(candidate_tracks.shape[:-1])}, "
                                   f"got {tuple(candidate_visibility.shape)}")
    if candidate_tracks.shape[1] == 0:
        raise TrackerRegistryError("an ensemble needs at least one candidate tracker listed before it")


def oracle_choice(candidate_tracks: torch.Tensor, gt_tracks: torch.Tensor) -> torch.Tensor:
    """(B, T, N) index of the candidate with the smallest float32 L2 error to ``gt_tracks`` (the first on ties)."""
    candidates = candidate_tracks.detach().cpu().float().permute(0, 2, 3, 1, 4)  # (B, T, N, C, 2)
    errors = torch.norm(candidates - gt_tracks.detach().cpu().float().unsqueeze(-2), dim=-1)  # (B, T, N, C)
    return torch.argmin(errors, dim=-1)


class OracleEnsemble:
    """The upper bound: at every point and frame, the candidate nearest the ground truth, with the true visibility."""

    def select(self, video: torch.Tensor, queries: torch.Tensor, candidate_tracks: torch.Tensor,
               candidate_visibility: torch.Tensor, gt_tracks: torch.Tensor | None = None,
               gt_visibility: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_candidates(candidate_tracks, candidate_visibility)
        if gt_tracks is None or gt_visibility is None:
            raise TrackerRegistryError("the oracle needs the ground-truth tracks and visibility")
        choice = oracle_choice(candidate_tracks, gt_tracks).to(candidate_tracks.device)  # (B, T, N)
        index = choice[:, None, :, :, None].expand(-1, -1, -1, -1, 2)
        tracks = torch.gather(candidate_tracks.float(), 1, index)[:, 0]
        return tracks, gt_visibility.to(candidate_tracks.device) > 0


class RandomEnsemble:
    """The lower bound: a whole video from one candidate, chosen round robin by the video's position."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def for_video(self, index: int) -> "RandomEnsemble":
        return RandomEnsemble(self.seed + index)

    def choice(self, batch: int, num_candidates: int) -> list[int]:
        """The candidate of each of ``batch`` videos."""
        return [(self.seed + b) % num_candidates for b in range(batch)]

    def select(self, video: torch.Tensor, queries: torch.Tensor, candidate_tracks: torch.Tensor,
               candidate_visibility: torch.Tensor, gt_tracks: torch.Tensor | None = None,
               gt_visibility: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_candidates(candidate_tracks, candidate_visibility)
        picks = self.choice(candidate_tracks.shape[0], candidate_tracks.shape[1])
        rows = torch.arange(len(picks), device=candidate_tracks.device)
        chosen = torch.tensor(picks, device=candidate_tracks.device)
        return candidate_tracks[rows, chosen], candidate_visibility[rows, chosen].bool()


@register_tracker("oracle", ensemble=True,
                  description="upper bound: per point and frame, the candidate closest to the ground truth")
def build_oracle() -> OracleEnsemble:
    return OracleEnsemble()


@register_tracker("random", ensemble=True,
                  description="lower bound: each video from one candidate, round robin (candidate (seed + j) % C)")
def build_random(seed: int = 0) -> RandomEnsemble:
    return RandomEnsemble(seed)
