"""The verifier's local encoder: deformable attention around a point on a feature pyramid, and the sine/cosine
embedding of a candidate's displacement from its query."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackon2.model.blocks import DMSMHABlock
from trackon2.model.verifier.config import HEADS, PYRAMID_LEVELS


def feature_pyramid(features: torch.Tensor) -> torch.Tensor:
    """(B, D, H', W') stride-4 features -> (B, P_total, D): the map and its 2x, 4x, 8x average pools, flattened
    row-major and concatenated (the value layout of deformable attention)."""
    levels = [features] + [F.avg_pool2d(features, kernel_size=k, stride=k) for k in (2, 4, 8)]
    return torch.cat([level.flatten(2) for level in levels], dim=2).transpose(1, 2)


def sample_points(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (B, D, H', W') at (B, N, 2) points in [-1, 1] (x, y), border padding -> (B, N, D)."""
    grid = points.to(features.dtype).unsqueeze(2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0] \
        .transpose(1, 2)


def displacement_embedding(xy: torch.Tensor, num_bands: int, max_freq: float) -> torch.Tensor:
    """(..., 2) displacements -> (..., 4 * num_bands + 2): sin and cos of pi * f * x for ``num_bands``
    frequencies f log-spaced from 1 to ``max_freq``, ordered [sin x, cos x, sin y, cos y], then the raw (x, y)."""
    freqs = torch.logspace(0.0, math.log10(max_freq), steps=num_bands, device=xy.device, dtype=xy.dtype)
    theta = xy.unsqueeze(-1) * (math.pi * freqs)
    sin, cos = theta.sin(), theta.cos()
    return torch.cat([sin[..., 0, :], cos[..., 0, :], sin[..., 1, :], cos[..., 1, :], xy], dim=-1)


class LocalEncoder(nn.ModuleList):
    """A stack of deformable attention blocks (4 heads, 4 levels, 4 points); each query attends to its own
    frame's pyramid around its point. A list, so that the parameters are named ``local_encoder.<i>.…``."""

    def __init__(self, dim: int, num_layers: int, p_drop: float = 0.1):
        super().__init__([DMSMHABlock(hidden_size=dim, num_heads=HEADS, num_levels=PYRAMID_LEVELS, p_drop=p_drop)
                          for _ in range(num_layers)])

    def forward(self, queries: torch.Tensor, pyramid: torch.Tensor, points: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """queries (B, Q, D), pyramid (B, P_total, D), points (B, Q, 2) in [-1, 1] -> (B, Q, D).

        Points outside the image are clamped to its border for the reference points.
        """
        reference = ((points + 1) / 2).clamp(0, 1)
        reference = reference.unsqueeze(2).expand(-1, -1, len(spatial_shapes), -1)
        for block in self:
            queries = block(queries, pyramid, reference, spatial_shapes)
        return queries
