"""Transformer blocks shared by the tracker: post-norm attention, deformable attention, and the feature FPN."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.msda import MultiScaleDeformableAttention
from model.onednn import linear, relu_feed_forward


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
        """q <- LN1(q + attended); q <- LN2(q + FFN(q)). The ReLU works in place on the (large) hidden tensor."""
        q = self.norm1(q + attended)
        if self.training:
            ffn = self.linear2(self.dropout(F.relu_(self.linear1(q))))
        else:
            ffn = relu_feed_forward(q, self.linear1, self.linear2)
        return self.norm2(q + self.dropout2(ffn))


def fused_attention(
    mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``mha(q, k, v, key_padding_mask=mask)`` at inference, through ``F.scaled_dot_product_attention``.

    Same parameters and result as the module (batch first, no dropout); projections shared by identical
    inputs are computed once (one matmul for q = k = v, one for k = v). A query whose keys are all masked gets
    an undefined row (NaN or zero, depending on the kernel); the caller zeroes it.
    """
    dim = q.shape[-1]
    heads = mha.num_heads
    weight, bias = mha.in_proj_weight, mha.in_proj_bias
    if q is k and k is v:
        q_p, k_p, v_p = linear(q, weight, bias).chunk(3, dim=-1)
    elif k is v:
        q_p = linear(q, weight[:dim], bias[:dim])
        k_p, v_p = linear(k, weight[dim:], bias[dim:]).chunk(2, dim=-1)
    elif q is k:
        q_p, k_p = linear(q, weight[:2 * dim], bias[:2 * dim]).chunk(2, dim=-1)
        v_p = linear(v, weight[2 * dim:], bias[2 * dim:])
    else:
        q_p = linear(q, weight[:dim], bias[:dim])
        k_p = linear(k, weight[dim:2 * dim], bias[dim:2 * dim])
        v_p = linear(v, weight[2 * dim:], bias[2 * dim:])

    def split_heads(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (heads, dim // heads)).transpose(1, 2)

    keep = None if mask is None else ~mask[:, None, None, :]
    attended = F.scaled_dot_product_attention(split_heads(q_p), split_heads(k_p), split_heads(v_p), attn_mask=keep)
    return linear(attended.transpose(1, 2).flatten(2), mha.out_proj.weight, mha.out_proj.bias)


def single_query_attention(
    mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``fused_attention`` for one query row per sequence (q (B, 1, C)), without projecting the keys and values.

    Per head h, q_h . (W_k,h k_j + b_k,h) = (W_k,h^T q_h) . k_j + q_h . b_k,h, and the last term is the same for
    every key, so softmax drops it; the attention-weighted sum of W_v,h v_j + b_v,h is W_v,h (sum_j a_j v_j) +
    b_v,h, the weights summing to one. So the query is carried into the keys' space and the weighted sum is
    projected once: O(heads * C * L) per sequence instead of O(C^2 * L) for the key and value projections.
    A query whose keys are all masked attends to nothing (its row is the value bias); the caller zeroes it.
    """
    batch, _, dim = q.shape
    heads = mha.num_heads
    head_dim = dim // heads
    weight, bias = mha.in_proj_weight, mha.in_proj_bias
    q_p = linear(q, weight[:dim], bias[:dim]).view(batch, heads, head_dim) * head_dim**-0.5
    key_weight = weight[dim:2 * dim].view(heads, head_dim, dim)
    value_weight = weight[2 * dim:].view(heads, head_dim, dim)
    query_in_key_space = torch.einsum("bhe,hec->bhc", q_p, key_weight)  # (B, heads, C)
    scores = torch.bmm(query_in_key_space, k.transpose(1, 2))  # (B, heads, L)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, :], float("-inf"))
    weights = scores.softmax(dim=-1)
    if mask is not None:  # a query whose keys are all masked: zero weights, not NaN (nor NaN gradients)
        weights = weights.masked_fill(mask.all(dim=1)[:, None, None], 0.0)
    mixed_values = torch.bmm(weights, v)  # (B, heads, C)
    attended = torch.einsum("bhc,hec->bhe", mixed_values, value_weight).reshape(batch, 1, dim) + bias[2 * dim:]
    return linear(attended, mha.out_proj.weight, mha.out_proj.bias)


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
        the same as when all rows are passed; a single query row takes ``single_query_attention``. Training keeps
        ``nn.MultiheadAttention`` (attention dropout).
        """
        if self.training:
            attended = self.mha(q, k, v, key_padding_mask=mask, need_weights=False)[0]
        elif q.shape[1] == 1 and k.shape[1] > self.mha.num_heads:
            attended = single_query_attention(self.mha, q, k, v, mask)
        else:
            attended = fused_attention(self.mha, q, k, v, mask)
        attended = self.dropout1(attended)
        if mask is not None and may_mask_all_keys:
            attended = attended.masked_fill(mask.all(dim=1)[:, None, None], 0.0)
        return self._finish(q, attended)


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
