"""Re-ranking of the top-K correlation peaks and the offset / visibility / uncertainty prediction head."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from trackon2.model.blocks import DMSMHABlock, MHABlock

STRIDE = 4


def patch_centres(indices: torch.Tensor, width_patches: int, dtype: torch.dtype) -> torch.Tensor:
    """Flat stride-4 patch indices -> (x, y) pixel centres of those patches (shape (..., 2))."""
    x = (indices % width_patches) * STRIDE + STRIDE // 2
    y = torch.div(indices, width_patches, rounding_mode="floor") * STRIDE + STRIDE // 2
    return torch.stack([x, y], dim=-1).to(dtype)


class MultiScaleContext(NamedTuple):
    """What a deformable block needs to attend to one frame's four feature scales."""

    feats: torch.Tensor  # (B, P + P/4 + P/16 + P/64, D)
    shapes: list[tuple[int, int]]
    size_wh: tuple[int, int]  # model input (W, H), to normalise pixel coordinates

    def reference_points(self, points: torch.Tensor) -> torch.Tensor:
        """Pixel points (B, Q, 2) -> normalised, clamped reference points (B, Q, 4, 2).

        Divides by Python numbers (bitwise the same as by a (W, H) tensor) so no constant is copied to the device.
        """
        width, height = self.size_wh
        normalised = torch.stack([points[..., 0] / width, points[..., 1] / height], dim=-1).clamp(0, 1)
        return normalised.unsqueeze(2).expand(-1, -1, len(self.shapes), -1)


class RerankOutput(NamedTuple):
    q: torch.Tensor  # (B, N, D)
    p_patch_top_k: torch.Tensor  # (B, N, K, 2)
    u_logit_top_k: torch.Tensor  # (B, N, K)
    s_logit_top_k: torch.Tensor  # (B, N, K)


class RerankModule(nn.Module):
    """Decode each of the K best patches locally, score them, and fold them back into the query."""

    def __init__(self, dim: int, top_k: int, num_layers: int, input_width: int, nhead: int = 4):
        """``top_k`` candidates decoded by ``num_layers`` local layers; ``input_width``: model input width (px)."""
        super().__init__()
        self.K = top_k
        self.D = dim
        self.Wf = input_width // STRIDE
        self.local_decoder = nn.ModuleList([DMSMHABlock(self.D, nhead, 4) for _ in range(num_layers)])
        self.fusion = MHABlock(self.D, nhead)
        self.fusion_layer = nn.Linear(2 * self.D, self.D)
        self.final_projection_layer = nn.Linear(2 * self.D, self.D)
        self.certainty_layer = nn.Linear(self.D, 1)
        self.score_layer = nn.Linear(self.D, 1)

    def forward(self, q: torch.Tensor, context: MultiScaleContext, correlation: torch.Tensor) -> RerankOutput:
        """q (B, N, D), correlation (B, N, P) -> refined q and the K candidates' points and logits."""
        batch, num, dim = q.shape
        k = self.K
        top_k = torch.topk(correlation, k, dim=-1)[1]
        p_top_k = patch_centres(top_k, self.Wf, q.dtype)
        refs = context.reference_points(p_top_k.reshape(batch, num * k, 2))
        candidates = q.unsqueeze(2).expand(-1, -1, k, -1)
        decoded = candidates.reshape(batch, num * k, dim)
        for layer in self.local_decoder:
            decoded = layer(decoded, context.feats, refs, context.shapes)
        fusion_input = torch.cat([decoded.view(batch, num, k, dim), candidates], dim=-1)
        decoded = self.fusion_layer(fusion_input)
        u_logit = self.certainty_layer(decoded).squeeze(-1)
        s_logit = self.score_layer(decoded).squeeze(-1)
        flat_q = q.reshape(batch * num, 1, dim)
        attended = self.fusion(flat_q, decoded.view(batch * num, k, dim), decoded.view(batch * num, k, dim))
        refined = self.final_projection_layer(torch.cat([attended, flat_q], dim=-1)).view(batch, num, dim)
        return RerankOutput(refined, p_top_k, u_logit, s_logit)


class PredictionHead(nn.Module):
    """Refine the coarse patch point with per-layer offsets (each within +-4 px); predict visibility/uncertainty."""

    def __init__(self, dim: int, num_layers: int, nhead: int = 4):
        super().__init__()
        self.layer_num = num_layers
        self.offset_transformer = nn.ModuleList([DMSMHABlock(dim, nhead, 4) for _ in range(self.layer_num)])
        self.offset_layer = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2), nn.Tanh())
        self.vis_layer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.unc_layer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(
        self, q: torch.Tensor, context: MultiScaleContext, p_patch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, N, D), p_patch (B, N, 2) pixels -> offsets (B, layers, N, 2), v_logit (B, N), u_logit (B, N)."""
        refs = context.reference_points(p_patch)
        refined = q
        offsets = []
        for layer in self.offset_transformer:
            refined = layer(refined, context.feats, refs, context.shapes)
            offsets.append(self.offset_layer(refined) * STRIDE)
        v_logit = self.vis_layer(q).squeeze(-1)
        u_logit = self.unc_layer(q).squeeze(-1)
        return torch.stack(offsets, dim=1), v_logit, u_logit
