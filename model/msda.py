"""Multi-scale deformable attention with mmcv's parameter names and semantics, in pure PyTorch.

The released checkpoints were trained with ``mmcv.ops.MultiScaleDeformableAttention``. This module has the same
parameters (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``), the same initialisation
and the same forward, including mmcv's habit of adding the residual (the query passed in) to its output. mmcv's
compiled kernel is used only when mmcv imports and the inputs are on CUDA in float32 / float16; otherwise the
bilinear sampling runs as one weighted gather over all levels (``deformable_sampling``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.onednn import linear

try:
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction as _MmcvFunction
except Exception:  # mmcv is optional: any import failure means "not available"
    _MmcvFunction = None


def deformable_sampling_reference(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The straightforward formulation: per-level ``F.grid_sample``, then the weighted sum (kept for tests).

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


class LevelConstants(NamedTuple):
    """Per-level sizes as (L, 1) columns: widths/heights in the compute dtype and as integers, first tokens."""

    width: torch.Tensor
    height: torch.Tensor
    width_int: torch.Tensor
    height_int: torch.Tensor
    start: torch.Tensor


@functools.lru_cache(maxsize=64)
def level_constants(spatial_shapes: tuple[tuple[int, int], ...], device: torch.device,
                    dtype: torch.dtype) -> LevelConstants:
    """Built once per (shapes, device, dtype): a per-call host-to-device copy would stall a CUDA stream.

    Created outside inference mode so that the cached tensors can also serve training steps.
    """
    starts = [0]
    for height, width in spatial_shapes[:-1]:
        starts.append(starts[-1] + height * width)

    def column(values: list[int], kind: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=kind, device=device).view(-1, 1)

    widths = [width for _, width in spatial_shapes]
    heights = [height for height, _ in spatial_shapes]
    with torch.inference_mode(False):
        return LevelConstants(column(widths, dtype), column(heights, dtype), column(widths, torch.long),
                              column(heights, torch.long), column(starts, torch.long))


def deformable_sampling(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear multi-scale sampling mixed by the attention weights, as one weighted gather over all levels.

    Same inputs, output and zero padding as ``deformable_sampling_reference`` (``grid_sample`` with
    align_corners=False), but each of the 4 bilinear corners of every sampling point becomes one weighted row of
    a single ``F.embedding_bag`` over the channels-last value table: no per-level maps, no stacked samples.
    """
    batch, num_value, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    width_f, height_f, width_i, height_i, starts = level_constants(
        tuple(map(tuple, spatial_shapes)), sampling_locations.device, sampling_locations.dtype)
    grid = 2 * sampling_locations - 1
    x = ((grid[..., 0] + 1) * width_f - 1) / 2  # (B, Q, heads, L, P) pixel coordinates, as grid_sample
    y = ((grid[..., 1] + 1) * height_f - 1) / 2
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    corner_x = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)
    corner_y = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    bilinear = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    inside = (corner_x >= 0) & (corner_x < width_i[..., None]) & (corner_y >= 0) & (corner_y < height_i[..., None])
    rows = starts[..., None] + corner_y.clamp(min=0) * width_i[..., None] + corner_x.clamp(min=0)
    rows = torch.where(inside, rows, 0)
    table_offset = torch.arange(batch * heads, device=value.device).view(batch, 1, heads, 1, 1, 1) * num_value
    weights = torch.where(inside, bilinear * attention_weights[..., None], 0.0)
    table = value.transpose(1, 2).reshape(batch * heads * num_value, channels)
    bags, bag_size = batch * queries * heads, levels * points * 4
    mixed = F.embedding_bag((rows + table_offset).reshape(bags, bag_size), table, mode="sum",
                            per_sample_weights=weights.reshape(bags, bag_size).to(table.dtype))
    return mixed.view(batch, queries, heads * channels)


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
        projected = linear(value, self.value_proj.weight, self.value_proj.bias).view(batch, num_value, heads, -1)
        offsets = linear(query, self.sampling_offsets.weight, self.sampling_offsets.bias)
        offsets = offsets.view(batch, num_query, heads, levels, points, 2)
        weights = linear(query, self.attention_weights.weight, self.attention_weights.bias)
        weights = weights.view(batch, num_query, heads, levels * points)
        weights = weights.softmax(-1).view(batch, num_query, heads, levels, points)
        sizes = level_constants(tuple(map(tuple, spatial_shapes)), offsets.device, offsets.dtype)
        normaliser = torch.cat([sizes.width, sizes.height], -1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        sampled = self._sample(projected, spatial_shapes, locations, weights)
        output = linear(sampled.to(query.dtype), self.output_proj.weight, self.output_proj.bias)
        return self.dropout(output) + query

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
