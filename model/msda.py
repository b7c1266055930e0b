"""Multi-scale deformable attention with mmcv's parameter names and semantics, in pure PyTorch.

The released checkpoints were trained with ``mmcv.ops.MultiScaleDeformableAttention``. This module has the same
parameters (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``), the same initialisation
and the same forward, including mmcv's habit of adding the residual (the query passed in) to its output. mmcv's
compiled kernel is used only when mmcv imports and the inputs are on CUDA in float32 / float16; otherwise the
bilinear sampling runs through ``F.grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction as _MmcvFunction
except Exception:  # mmcv is optional: any import failure means "not available"
    _MmcvFunction = None


def deformable_sampling(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Sample each level bilinearly at the given locations and mix the samples with the attention weights.

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
        shapes = torch.tensor(spatial_shapes, dtype=offsets.dtype, device=offsets.device)
        normaliser = torch.stack([shapes[:, 1], shapes[:, 0]], -1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        sampled = self._sample(projected, spatial_shapes, locations, weights)
        return self.dropout(self.output_proj(sampled.to(query.dtype))) + query

    @staticmethod
    def _sample(
        value: torch.Tensor, spatial_shapes: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Run the sampling in at least float32 (half-precision locations are too coarse on large maps)."""
        compute_dtype = torch.promote_types(value.dtype, torch.float32)
        if _MmcvFunction is not None and value.is_cuda and compute_dtype == torch.float32:
            shapes = torch.tensor(spatial_shapes, dtype=torch.long, device=value.device)
            starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
            return _MmcvFunction.apply(
                value.float(), shapes, starts, locations.float(), weights.float(), 64
            )
        return deformable_sampling(
            value.to(compute_dtype), spatial_shapes, locations.to(compute_dtype), weights.to(compute_dtype)
        )
