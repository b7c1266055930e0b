"""Multi-scale deformable attention with mmcv's parameter names and semantics, in pure PyTorch.

The released checkpoints were trained with ``mmcv.ops.MultiScaleDeformableAttention``. This module has the same
parameters (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``), the same initialisation
and the same forward, including mmcv's habit of adding the residual (the query passed in) to its output. The
bilinear sampling runs per level through ``grid_sample``; ``runtime.fast`` has a single-gather form for the CPU and
mmcv's compiled kernel where mmcv is installed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def deformable_sampling_per_level(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear sampling of every level at the sampling locations (``F.grid_sample``), then the weighted sum.

    value: (B, S, heads, Ch) with S = sum of H_l * W_l; sampling_locations: (B, Q, heads, L, P, 2) in [0, 1]
    (x, y); attention_weights: (B, Q, heads, L, P). Returns (B, Q, heads * Ch).
    """
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1
    samples = []
    for level, (height, width) in enumerate(spatial_shapes):
        value_l = per_level[level].flatten(2).transpose(1, 2).reshape(batch * heads, channels, height, width)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    mixed = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)
    return mixed.view(batch, heads * channels, queries).transpose(1, 2)


class MultiScaleDeformableAttention(nn.Module):
    """mmcv-compatible multi-scale deformable attention (batch first, value_proj_ratio 1)."""

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int = 4, dropout: float = 0.1):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """mmcv's initialisation: offsets fan out radially per head, uniform attention, Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        grid = directions.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """query (B, Q, C), value (B, S, C), reference_points (B, Q, L, 2) in [0, 1] -> (B, Q, C), residual included.

        ``spatial_shapes`` lists (H_l, W_l) per level; the levels of ``value`` are concatenated in that order.
        """
        batch, num_query, _ = query.shape
        num_value = value.shape[1]
        expected = sum(h * w for h, w in spatial_shapes)
        if num_value != expected:
            raise ValueError(f"value has {num_value} tokens but spatial_shapes {spatial_shapes} need {expected}")
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        projected = self.value_proj(value).view(batch, num_value, heads, -1)
        offsets = self.sampling_offsets(query).view(batch, num_query, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_query, heads, levels * points)
        weights = weights.softmax(-1).view(batch, num_query, heads, levels, points)
        sampled = self.sample(projected, spatial_shapes, reference_points, offsets, weights)
        return self.dropout(self.output_proj(sampled.to(query.dtype))) + query

    def sample(self, value: torch.Tensor, spatial_shapes: list[tuple[int, int]], reference_points: torch.Tensor,
               offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Sample at ``reference + offset / size`` in at least float32 (half-precision locations are too coarse on
        large maps). value (B, S, heads, Ch), reference_points (B, Q, L, 2), offsets (B, Q, heads, L, P, 2),
        weights (B, Q, heads, L, P) -> (B, Q, heads * Ch)."""
        compute_dtype = torch.promote_types(value.dtype, torch.float32)
        value, reference_points, offsets, weights = (
            tensor.to(compute_dtype) for tensor in (value, reference_points, offsets, weights))
        size_xy = torch.tensor([[width, height] for height, width in spatial_shapes], dtype=compute_dtype,
                               device=value.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / size_xy[:, None, :]
        return deformable_sampling_per_level(value, spatial_shapes, locations, weights)
