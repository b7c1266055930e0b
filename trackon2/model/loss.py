"""The seven training losses of Track-On2, in the reference's order.

``LossFunction.from_config(args)(out, gt_tracks, gt_visibility, query_times)`` returns a dict from each name of
``LOSS_NAMES`` to its scalar loss, in that order; the sum of its values is the training objective. Ground truth is in
model-input pixels; logits are evaluated in at least float32 (as the reference does under mixed precision).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackon2.model.heads import STRIDE

TEMPERATURE = 0.05
UNCERTAIN_DISTANCE = 12.0
# The reference's names and order: patch classification (C1, C2), visibility, offset, uncertainty, top-k
# uncertainty, top-k ranking.
LOSS_NAMES = ("L_p", "L_p2", "L_vis", "L_o", "L_u", "L_topk_u", "L_topk_rank")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, nan_when_empty: bool = False) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1; an empty mask gives 0, or NaN (0 / 0, the reference)
    with ``nan_when_empty``."""
    mask = mask.to(values.dtype)
    count = mask.sum()
    return (values * mask).sum() / (count if nan_when_empty else count.clamp(min=1))


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


class LossFunction(nn.Module):
    """The training losses for a model of input size ``input_size`` (H, W).

    ``empty_mask_loss`` is "zero" (ours: a term over an empty mask is 0) or "nan" (the reference's behaviour).
    """

    def __init__(self, input_size: Sequence[int], lambda_patch_cls: float = 3.0, empty_mask_loss: str = "zero"):
        super().__init__()
        self.H, self.W = (int(size) for size in input_size)
        self.Wf, self.Hf = self.W // STRIDE, self.H // STRIDE
        self.lambda_patch_cls = float(lambda_patch_cls)
        self.nan_when_empty = empty_mask_loss == "nan"

    @classmethod
    def from_config(cls, config: Any) -> "LossFunction":
        """Built from a config namespace (or any object) with the reference's key names."""
        return cls(config.input_size, config.lambda_patch_cls, getattr(config, "empty_mask_loss", "zero"))

    def forward(
        self,
        out: dict[str, torch.Tensor],
        gt_tracks: torch.Tensor,
        gt_visibility: torch.Tensor,
        query_times: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """out: the training forward's dict; gt_tracks (B, T, N, 2); gt_visibility (B, T, N) bool; query_times (B, N).
        Returns {name: scalar loss} for the names of ``LOSS_NAMES``, in that order."""
        if gt_tracks.shape[:3] != out["V_logit"].shape or gt_visibility.shape != out["V_logit"].shape:
            raise ValueError(
                f"ground truth shapes tracks {tuple(gt_tracks.shape)} / visibility {tuple(gt_visibility.shape)} do "
                f"not match the predictions (B, T, N) = {tuple(out['V_logit'].shape)}"
            )
        visible = gt_visibility.bool()
        frames = torch.arange(gt_tracks.shape[1], device=gt_tracks.device).view(1, -1, 1)
        after_query = frames > query_times.unsqueeze(1)
        point_mask = after_query & visible

        l_p = self.patch_classification_loss(out["C1"], gt_tracks, point_mask)
        l_p2 = self.patch_classification_loss(out["C2"], gt_tracks, point_mask)
        layers = out["O"].shape[2]
        l_o = sum(self.offset_loss(out["O"][:, :, i], out["P_patch"], gt_tracks, point_mask)
                  for i in range(layers)) / layers
        l_vis = self.masked_mean(
            F.binary_cross_entropy_with_logits(_at_least_float32(out["V_logit"]),
                                               visible.to(_at_least_float32(out["V_logit"]).dtype),
                                               reduction="none"),
            after_query,
        )
        l_u = self.uncertainty_loss(out["U_logit"], out["P_patch"], gt_tracks, visible, after_query)
        k = out["P_patch_top_k"].shape[-2]
        l_topk_u = sum(
            self.uncertainty_loss(out["U_logit_top_k"][..., i], out["P_patch_top_k"][..., i, :], gt_tracks, visible,
                                  after_query)
            for i in range(k)
        ) / k
        l_rank = self.rank_loss(out["S_logit_top_k"], out["P_patch_top_k"], gt_tracks, point_mask)
        return dict(zip(LOSS_NAMES, (l_p, l_p2, l_vis, l_o, l_u, l_topk_u, l_rank)))

    def masked_mean(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over ``mask``; over an empty mask 0, or NaN with ``empty_mask_loss: nan`` (the reference)."""
        return _masked_mean(values, mask, self.nan_when_empty)

    def patch_indices(self, points: torch.Tensor) -> torch.Tensor:
        """Flat stride-4 patch index of each (x, y) point; points outside the frame map to patch 0."""
        col = torch.floor(points[..., 0] / STRIDE).long()
        row = torch.floor(points[..., 1] / STRIDE).long()
        inside = (col >= 0) & (col < self.Wf) & (row >= 0) & (row < self.Hf)
        return torch.where(inside, row * self.Wf + col, torch.zeros_like(col))

    def patch_classification_loss(self, scores: torch.Tensor, gt_tracks: torch.Tensor,
                                  point_mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of correlation scores / 0.05 against the ground-truth patch, x lambda_patch_cls."""
        logits = _at_least_float32(scores.flatten(0, 2) / TEMPERATURE)  # divided in the input dtype, as the reference
        targets = self.patch_indices(gt_tracks).flatten()
        loss = F.cross_entropy(logits, targets, reduction="none")
        return self.masked_mean(loss, point_mask.flatten()) * self.lambda_patch_cls

    def offset_loss(self, offsets: torch.Tensor, p_patch: torch.Tensor, gt_tracks: torch.Tensor,
                    point_mask: torch.Tensor) -> torch.Tensor:
        """L1 between predicted and true offsets from the patch centre, clamped to [0, 8] per point."""
        error = (offsets - (gt_tracks - p_patch)).abs().sum(-1)
        return self.masked_mean(error.clamp(0, 2 * STRIDE), point_mask)

    def uncertainty_loss(self, logits: torch.Tensor, points: torch.Tensor, gt_tracks: torch.Tensor,
                         visible: torch.Tensor, after_query: torch.Tensor) -> torch.Tensor:
        """BCE: a prediction is 'uncertain' if it is over 12 px from the truth or the point is hidden."""
        distance = (points - gt_tracks).pow(2).sum(-1).sqrt()
        logits = _at_least_float32(logits)
        uncertain = ((distance > UNCERTAIN_DISTANCE) | ~visible).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, uncertain, reduction="none")
        return self.masked_mean(loss, after_query)

    def rank_loss(self, scores: torch.Tensor, candidates: torch.Tensor, gt_tracks: torch.Tensor,
                  point_mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the K candidate scores against the candidate nearest to the truth."""
        distances = torch.norm(candidates - gt_tracks.unsqueeze(-2), dim=-1)
        best = distances.argmin(dim=-1).flatten()
        loss = F.cross_entropy(_at_least_float32(scores).flatten(0, 2), best, reduction="none")
        return self.masked_mean(loss, point_mask.flatten())
