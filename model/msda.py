"""Multi-scale deformable attention with mmcv's parameter names and semantics, in pure PyTorch.

The released checkpoints were trained with ``mmcv.ops.MultiScaleDeformableAttention``. This module has the same
parameters (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``), the same initialisation
and the same forward, including mmcv's habit of adding the residual (the query passed in) to its output. mmcv's
compiled kernel is used only when mmcv imports and the inputs are on CUDA in float32 / float16; otherwise the
bilinear sampling runs per level through ``grid_sample`` on CUDA and as one weighted gather over all levels
(``deformable_gather``) on the CPU.
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
    """Per-level constants of the gather, built once per (shapes, device, dtype).

    ``size_xy`` (L, 2) holds each level's (W_l, H_l) in the compute dtype and ``corner_max`` (L, 2) the largest
    first bilinear corner that keeps both corners of an axis inside the zero-padded map. Counted in tokens of the
    padded maps (``padded_tokens`` in all), level l's cell (0, 0) is ``level_origin[l]`` (L, 1) and one step in y
    is ``padded_width[l]`` (L, 1).
    """

    size_xy: torch.Tensor
    corner_max: torch.Tensor
    padded_width: torch.Tensor
    level_origin: torch.Tensor
    padded_tokens: int


@functools.lru_cache(maxsize=64)
def level_constants(spatial_shapes: tuple[tuple[int, int], ...], device: torch.device,
                    dtype: torch.dtype) -> LevelConstants:
    """Built once per (shapes, device, dtype): a per-call host-to-device copy would stall a CUDA stream.

    Created outside inference mode so that the cached tensors can also serve training steps.
    """
    padded_widths = [width + 2 * PAD for _, width in spatial_shapes]
    origins, start = [], 0
    for (height, _), padded_width in zip(spatial_shapes, padded_widths):
        origins.append(start + PAD * padded_width + PAD)
        start += (height + 2 * PAD) * padded_width

    def table(rows: list[list[int]], kind: torch.dtype) -> torch.Tensor:
        return torch.tensor(rows, dtype=kind, device=device)

    with torch.inference_mode(False):
        return LevelConstants(
            size_xy=table([[width, height] for height, width in spatial_shapes], dtype),
            corner_max=table([[width + PAD - 2, height + PAD - 2] for height, width in spatial_shapes], torch.long),
            padded_width=table([[width] for width in padded_widths], torch.long),
            level_origin=table([[origin] for origin in origins], torch.long),
            padded_tokens=start,
        )


def padded_value_table(value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """(B, S, heads, Ch) level tokens -> (B * S_pad * heads, Ch): every level's map with PAD zero cells on each
    side, in token order (row-major per level, levels concatenated), each token's heads in consecutive rows.

    Token order keeps the layout of ``value``: each level is copied once, as whole rows, into the table, and only
    the padding is zeroed.
    """
    batch, _, heads, channels = value.shape
    sizes = level_constants(tuple(map(tuple, spatial_shapes)), value.device, value.dtype)
    table = value.new_empty(batch, sizes.padded_tokens, heads, channels)
    start = 0
    for level_tokens, (height, width) in zip(value.split([h * w for h, w in spatial_shapes], dim=1), spatial_shapes):
        padded = (height + 2 * PAD, width + 2 * PAD)
        level_map = table[:, start:start + padded[0] * padded[1]].view(batch, *padded, heads, channels)
        for border in (level_map[:, :PAD], level_map[:, PAD + height:], level_map[:, PAD:PAD + height, :PAD],
                       level_map[:, PAD:PAD + height, PAD + width:]):
            border.zero_()
        level_map[:, PAD:PAD + height, PAD:PAD + width] = level_tokens.view(batch, height, width, heads, channels)
        start += padded[0] * padded[1]
    return table.view(-1, channels)


def pixel_locations(reference_points: torch.Tensor, offsets: torch.Tensor,
                    size_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid_sample``'s pixel coordinates (align_corners=False) of mmcv's sampling locations, as (x, y).

    mmcv samples at ``reference + offset / size`` in [0, 1], i.e. at pixel ``(reference + offset / size) * size -
    0.5``; this is ``reference * size - 0.5 + offset``, computed without the division. reference_points
    (B, Q, L, 2), offsets (B, Q, heads, L, P, 2), size_xy (L, 2) -> x and y, each (B, Q, heads, L, P).
    """
    origin = torch.addcmul(size_xy.new_full((), -0.5), reference_points, size_xy)[:, :, None, :, None, :]
    return offsets[..., 0] + origin[..., 0], offsets[..., 1] + origin[..., 1]


def deformable_gather(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    x: torch.Tensor,
    y: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear multi-scale sampling mixed by the attention weights, as one weighted gather over all levels.

    ``x``, ``y`` (B, Q, heads, L, P) are ``grid_sample`` pixel coordinates (see ``pixel_locations``). Each of the
    4 bilinear corners of every sampling point becomes one weighted row of a single ``F.embedding_bag`` over a
    zero-padded value table in token order: no per-level maps, no stacked samples, and no inside/outside masks (a
    corner outside its level reads a padding zero; points further out are moved onto the padding, where all four
    corners are zero). Returns (B, Q, heads * Ch), as ``deformable_sampling_per_level``.
    """
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points = x.shape
    sizes = level_constants(tuple(map(tuple, spatial_shapes)), x.device, x.dtype)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    # First corners in [-PAD, size + PAD - 2] keep both corners of an axis inside the padded map. Clamped as
    # integers: a coordinate beyond the integer range or NaN converts to an arbitrary integer, which the clamp
    # still puts on the padding (the sample is zero, or NaN through its weights).
    column = torch.minimum(x0.long().clamp_(min=-PAD), sizes.corner_max[:, 0:1])
    row = torch.minimum(y0.long().clamp_(min=-PAD), sizes.corner_max[:, 1:2])
    table = padded_value_table(value, spatial_shapes)
    index_kind = torch.int32 if table.shape[0] < 2**31 else torch.long
    # Table row of (batch b, head h, level l)'s origin: token (b * S_pad + origin_l), head h.
    origin_token = (torch.arange(batch, device=value.device).view(batch, 1, 1, 1) * sizes.padded_tokens
                    + sizes.level_origin.view(1, 1, levels, 1))
    origin_row = origin_token * heads + torch.arange(heads, device=value.device).view(1, heads, 1, 1)
    cell = torch.addcmul(column, row, sizes.padded_width)  # (B, Q, heads, L, P), tokens from the level's origin
    first = torch.addcmul(origin_row.unsqueeze(1), cell, cell.new_full((), heads)).to(index_kind)
    below = first + (sizes.padded_width * heads).to(index_kind)
    rows = torch.stack([first, first + heads, below, below + heads], dim=-1)  # (x0,y0) (x1,y0) (x0,y1) (x1,y1)
    gx, gy = 1 - fx, 1 - fy
    top, bottom = gy * attention_weights, fy * attention_weights
    weights = torch.stack([gx * top, fx * top, gx * bottom, fx * bottom], dim=-1)
    bags, bag_size = batch * queries * heads, levels * points * 4
    mixed = F.embedding_bag(rows.reshape(bags, bag_size), table, mode="sum",
                            per_sample_weights=weights.reshape(bags, bag_size).to(table.dtype))
    return mixed.view(batch, queries, heads * channels)


def deformable_sampling(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """``deformable_gather`` with ``deformable_sampling_per_level``'s inputs (sampling locations in [0, 1])."""
    sizes = level_constants(tuple(map(tuple, spatial_shapes)), sampling_locations.device, sampling_locations.dtype)
    pixels = sampling_locations * sizes.size_xy[:, None, :] - 0.5
    return deformable_gather(value, spatial_shapes, pixels[..., 0], pixels[..., 1], attention_weights)


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
        sampled = self._sample(projected, spatial_shapes, reference_points, offsets, weights)
        output = linear(sampled.to(query.dtype), self.output_proj.weight, self.output_proj.bias)
        return self.dropout(output) + query

    @staticmethod
    def _sample(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], reference_points: torch.Tensor,
                offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Sample at ``reference + offset / size`` in at least float32 (half-precision locations are too coarse on
        large maps): mmcv's kernel when installed, per-level ``grid_sample`` on other CUDA devices, the single
        gather on the CPU (which takes the same locations as pixel coordinates, computed without the division)."""
        compute_dtype = torch.promote_types(value.dtype, torch.float32)
        value, reference_points, offsets, weights = (
            tensor.to(compute_dtype) for tensor in (value, reference_points, offsets, weights))
        sizes = level_constants(tuple(map(tuple, spatial_shapes)), value.device, compute_dtype)
        if not value.is_cuda:
            x, y = pixel_locations(reference_points, offsets, sizes.size_xy)
            return deformable_gather(value, spatial_shapes, x, y, weights)
        locations = reference_points[:, :, None, :, None, :] + offsets / sizes.size_xy[:, None, :]
        if _MmcvFunction is not None and compute_dtype == torch.float32:
            shapes = torch.tensor(spatial_shapes, dtype=torch.long, device=value.device)
            starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
            return _MmcvFunction.apply(value, shapes, starts, locations, weights, 64)
        return deformable_sampling_per_level(value, spatial_shapes, locations, weights)
