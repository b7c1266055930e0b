"""Multi-scale deformable attention with mmcv's parameter names and semantics, in pure PyTorch.

The released checkpoints were trained with ``mmcv.ops.MultiScaleDeformableAttention``. This module has the same
parameters (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``), the same initialisation
and the same forward, including mmcv's habit of adding the residual (the query passed in) to its output. mmcv's
compiled kernel is used only when mmcv imports and the inputs are on CUDA in float32 / float16; otherwise the
bilinear sampling runs per level through ``grid_sample`` on CUDA and as one weighted gather over all levels
(``deformable_sampling``) on the CPU.
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


def deformable_sampling_per_level(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The straightforward formulation: per-level ``F.grid_sample``, then the weighted sum.

    Used on CUDA, where its few large kernels beat the gather (on an H100 the gather made the ViT-Adapter stage
    30% slower), and by the tests as the formulation the gather must reproduce.

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


# Zero rows around every level of the gather's value table: a bilinear corner up to PAD cells outside its level
# reads a zero instead of needing a mask.
PAD = 2


class LevelConstants(NamedTuple):
    """Per-level sizes as (L, 1) columns: widths/heights in the compute dtype and, for the zero-padded value table
    of ``deformable_sampling``, the padded widths and the first row of each padded level."""

    width: torch.Tensor
    height: torch.Tensor
    width_int: torch.Tensor
    height_int: torch.Tensor
    padded_width: torch.Tensor
    padded_start: torch.Tensor


@functools.lru_cache(maxsize=64)
def level_constants(spatial_shapes: tuple[tuple[int, int], ...], device: torch.device,
                    dtype: torch.dtype) -> LevelConstants:
    """Built once per (shapes, device, dtype): a per-call host-to-device copy would stall a CUDA stream.

    Created outside inference mode so that the cached tensors can also serve training steps.
    """
    widths = [width for _, width in spatial_shapes]
    heights = [height for height, _ in spatial_shapes]
    padded_widths = [width + 2 * PAD for width in widths]
    starts = [0]
    for height, padded_width in zip(heights[:-1], padded_widths[:-1]):
        starts.append(starts[-1] + (height + 2 * PAD) * padded_width)

    def column(values: list[int], kind: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=kind, device=device).view(-1, 1)

    with torch.inference_mode(False):
        return LevelConstants(column(widths, dtype), column(heights, dtype), column(widths, torch.long),
                              column(heights, torch.long), column(padded_widths, torch.long),
                              column(starts, torch.long))


def padded_value_table(value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """(B, S, heads, Ch) level tokens -> (B * heads * S_pad, Ch): per (batch, head), every level's map with PAD
    zero cells on each side, flattened row-major and concatenated over levels (the gather's table)."""
    batch, _, heads, channels = value.shape
    maps = []
    for level_tokens, (height, width) in zip(value.split([h * w for h, w in spatial_shapes], dim=1), spatial_shapes):
        level_map = level_tokens.view(batch, height, width, heads, channels).permute(0, 3, 1, 2, 4)
        maps.append(F.pad(level_map, (0, 0, PAD, PAD, PAD, PAD)).flatten(2, 3))
    return torch.cat(maps, dim=2).reshape(-1, channels)


def deformable_sampling(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear multi-scale sampling mixed by the attention weights, as one weighted gather over all levels.

    Same inputs, output and zero padding as ``deformable_sampling_per_level`` (``grid_sample`` with
    align_corners=False), but each of the 4 bilinear corners of every sampling point becomes one weighted row of
    a single ``F.embedding_bag`` over a zero-padded, channels-last value table: no per-level maps, no stacked
    samples, and no inside/outside masks (a corner outside its level reads a padding zero; points further out are
    moved to the padding, where all four corners are zero).
    """
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    sizes = level_constants(tuple(map(tuple, spatial_shapes)), sampling_locations.device, sampling_locations.dtype)
    x = sampling_locations[..., 0] * sizes.width - 0.5  # (B, Q, heads, L, P) pixel coordinates, as grid_sample
    y = sampling_locations[..., 1] * sizes.height - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    # First corners in [-PAD, size + PAD - 2] keep both corners of an axis inside the padded map.
    column = torch.minimum(x0.long().clamp_(min=-PAD), sizes.width_int + (PAD - 2)) + PAD
    row = torch.minimum(y0.long().clamp_(min=-PAD), sizes.height_int + (PAD - 2)) + PAD
    table = padded_value_table(value, spatial_shapes)
    per_head = table.shape[0] // (batch * heads)
    table_offset = torch.arange(batch * heads, device=value.device).view(batch, 1, heads, 1, 1) * per_head
    first_corner = table_offset + sizes.padded_start + row * sizes.padded_width + column
    down = first_corner + sizes.padded_width
    rows = torch.stack([first_corner, first_corner + 1, down, down + 1], dim=-1)  # (x0,y0) (x1,y0) (x0,y1) (x1,y1)
    gx, gy = 1 - fx, 1 - fy
    weights = torch.stack([gx * gy * attention_weights, fx * gy * attention_weights, gx * fy * attention_weights,
                           fx * fy * attention_weights], dim=-1)
    bags, bag_size = batch * queries * heads, levels * points * 4
    mixed = F.embedding_bag(rows.reshape(bags, bag_size), table, mode="sum",
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
        """Run the sampling in at least float32 (half-precision locations are too coarse on large maps): mmcv's
        kernel when installed, per-level ``grid_sample`` on other CUDA devices, the single gather on the CPU."""
        compute_dtype = torch.promote_types(value.dtype, torch.float32)
        if _MmcvFunction is not None and value.is_cuda and compute_dtype == torch.float32:
            shapes = torch.tensor(spatial_shapes, dtype=torch.long, device=value.device)
            starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
            return _MmcvFunction.apply(
                value.float(), shapes, starts, locations.float(), weights.float(), 64
            )
        sample = deformable_sampling_per_level if value.is_cuda else deformable_sampling
        return sample(value.to(compute_dtype), spatial_shapes, locations.to(compute_dtype), weights.to(compute_dtype))
