"""Transformer blocks shared by the tracker: post-norm attention, deformable attention, and the feature FPN."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackon2.model.msda import MultiScaleDeformableAttention


class _FeedForward(nn.Module):
    """The post-norm ReLU feed-forward half shared by both attention blocks (keeps the reference's names).

    The attention module ``mha`` is registered first, as in the reference, so that parameters and optimizer states
    are listed in the reference's order.
    """

    def __init__(self, hidden_size: int, p_drop: float, mha: nn.Module):
        super().__init__()
        self.mha = mha
        self.linear1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.dropout = nn.Dropout(p_drop)
        self.linear2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout1 = nn.Dropout(p_drop)
        self.dropout2 = nn.Dropout(p_drop)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)

    def _finish(self, q: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """q <- LN1(q + attended); q <- LN2(q + FFN(q))."""
        q = self.norm1(q + attended)
        return self.norm2(q + self.dropout2(self.feed_forward(q)))

    def feed_forward(self, q: torch.Tensor) -> torch.Tensor:
        """linear2(dropout(ReLU(linear1(q)))); the ReLU works in place on the (large) hidden tensor."""
        return self.linear2(self.dropout(F.relu_(self.linear1(q))))


class MHABlock(_FeedForward):
    """Post-norm multi-head attention block; a query whose keys are all masked receives no attention update."""

    def __init__(self, hidden_size: int, num_heads: int, attn_drop: float = 0.1, mlp_drop: float = 0.1):
        mha = nn.MultiheadAttention(hidden_size, num_heads, attn_drop, batch_first=True)
        super().__init__(hidden_size, mlp_drop, mha)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
        may_mask_all_keys: bool = True,
    ) -> torch.Tensor:
        """q (B, N, C), k/v (B, S, C), mask (B, S) with True = ignore this key. ``may_mask_all_keys`` False tells
        that no mask row is all True (the zeroing of such rows is then skipped).

        q may be a subset of the rows of k (e.g. only the rows whose output is needed): each row's result is
        the same as when all rows are passed.
        """
        attended = self.dropout1(self.attend(q, k, v, mask))
        if mask is not None and may_mask_all_keys:
            attended = attended.masked_fill(mask.all(dim=1)[:, None, None], 0.0)
        return self._finish(q, attended)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Multi-head attention of q to (k, v); a query whose keys are all masked gets an undefined row."""
        return self.mha(q, k, v, key_padding_mask=mask, need_weights=False)[0]


class DMSMHABlock(_FeedForward):
    """Post-norm deformable multi-scale attention block (the attention's own residual is kept, as in mmcv)."""

    def __init__(self, hidden_size: int, num_heads: int, num_levels: int, p_drop: float = 0.1):
        mha = MultiScaleDeformableAttention(hidden_size, num_heads, num_levels, num_points=4, dropout=p_drop)
        super().__init__(hidden_size, p_drop, mha)

    def forward(
        self,
        q: torch.Tensor,
        feats: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """q (B, N, C) attends to the concatenated levels ``feats`` around ``reference_points`` (B, N, L, 2)."""
        attended = self.dropout1(self.mha(q, feats, reference_points, spatial_shapes))
        return self._finish(q, attended)


def _lateral(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1), nn.GroupNorm(32, channels), nn.ReLU())


class SimpleFPN(nn.Module):
    """Top-down fusion of the four feature scales into one stride-4 map."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 32:
            raise ValueError(f"D ({dim}) must be divisible by 32 for the FPN's GroupNorm(32)")
        self.lateral32 = _lateral(dim)
        self.lateral16 = _lateral(dim)
        self.lateral8 = _lateral(dim)
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
            nn.GroupNorm(32, dim),
            nn.ReLU(),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
        )

    def forward(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        """Each input is a (N, D, h, w) map; returns the fused (N, D, H/4, W/4) map."""
        l32 = self.lateral32(f32)
        l16 = self.lateral16(f16) + F.interpolate(l32, size=f16.shape[-2:], mode="nearest")
        l8 = self.lateral8(f8) + F.interpolate(l16, size=f8.shape[-2:], mode="nearest")
        return self.output(f4 + F.interpolate(l8, size=f4.shape[-2:], mode="nearest"))
