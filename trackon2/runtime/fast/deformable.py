"""Multi-scale deformable sampling without per-level maps: one weighted gather over all levels on the CPU, and
mmcv's compiled kernel on CUDA where mmcv is installed.

Both compute what ``model.msda.deformable_sampling_per_level`` computes (float32 rounding aside).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from trackon2.model.msda import MultiScaleDeformableAttention

try:
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction as _MmcvFunction
except Exception:  # mmcv is optional: any import failure means "not available"
    _MmcvFunction = None


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


class FastDeformableAttention(MultiScaleDeformableAttention):
    """``MultiScaleDeformableAttention`` sampling through the gather on the CPU and mmcv's kernel on CUDA (float32,
    where installed); elsewhere (CUDA without mmcv) the per-level ``grid_sample`` of the plain module, whose few
    large kernels beat the gather there (on an H100 the gather made the ViT-Adapter stage 30% slower)."""

    def sample(self, value: torch.Tensor, spatial_shapes: list[tuple[int, int]], reference_points: torch.Tensor,
               offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        compute_dtype = torch.promote_types(value.dtype, torch.float32)
        if value.is_cuda and (_MmcvFunction is None or compute_dtype != torch.float32):
            return super().sample(value, spatial_shapes, reference_points, offsets, weights)
        value, reference_points, offsets, weights = (
            tensor.to(compute_dtype) for tensor in (value, reference_points, offsets, weights))
        sizes = level_constants(tuple(map(tuple, spatial_shapes)), value.device, compute_dtype)
        if not value.is_cuda:
            x, y = pixel_locations(reference_points, offsets, sizes.size_xy)
            return deformable_gather(value, spatial_shapes, x, y, weights)
        locations = reference_points[:, :, None, :, None, :] + offsets / sizes.size_xy[:, None, :]
        shapes = torch.tensor(spatial_shapes, dtype=torch.long, device=value.device)
        starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
        return _MmcvFunction.apply(value, shapes, starts, locations, weights, 64)
