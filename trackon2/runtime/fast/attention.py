"""The attention blocks at inference: fused scaled-dot-product attention and single-query attention.

Both compute what ``nn.MultiheadAttention`` computes (batch first, no dropout) with the same parameters. Training
(dropout) falls back to the plain block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from trackon2.model.blocks import DMSMHABlock, MHABlock
from trackon2.runtime.fast.derived import KeepsDerivedValues
from trackon2.runtime.fast.linear import FastLinear
from trackon2.runtime.fast.onednn import convert_weights, onednn_applies, project, relu_feed_forward

# The row ranges of the packed in-projection, by the part of (q, k, v) they project.
_PARTS = {"q": (0, 1), "k": (1, 2), "v": (2, 3), "qk": (0, 2), "kv": (1, 3), "qkv": (0, 3)}


class FastMultiheadAttention(KeepsDerivedValues, nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (same parameters) that projects by parts of its packed in-projection, each part's
    converted weights kept on it while frozen."""

    def project(self, x: torch.Tensor, part: str) -> torch.Tensor:
        """x projected by the rows of the packed in-projection for ``part`` ('q', 'kv', 'qkv', ...)."""
        first, last = (index * self.embed_dim for index in _PARTS[part])
        weight, bias = self.in_proj_weight[first:last], self.in_proj_bias[first:last]
        if not onednn_applies(x):
            if self.in_proj_weight.requires_grad:
                self.forget_derived()
            return F.linear(x, weight, bias)
        return project(x, self.derived(part, (self.in_proj_weight, self.in_proj_bias),
                                       lambda: convert_weights(weight, bias)))


class FastOutProjection(FastLinear, NonDynamicallyQuantizableLinear):
    """The attention's output projection through oneDNN (its class keeps the name ``nn.MultiheadAttention``
    expects)."""


class FastFeedForward:
    """The blocks' ReLU feed-forward at float32 CPU inference with the hidden tensor kept in oneDNN's layout
    between its two linears (``FastLinear`` children, which keep the converted weights)."""

    def feed_forward(self, q: torch.Tensor) -> torch.Tensor:
        fast_children = isinstance(self.linear1, FastLinear) and isinstance(self.linear2, FastLinear)
        if self.training or not fast_children or not onednn_applies(q):
            return super().feed_forward(q)
        return relu_feed_forward(q, self.linear1.onednn_weights(), self.linear2.onednn_weights())


class FastMHABlock(FastFeedForward, MHABlock):
    """``MHABlock`` whose attention shares the projections of identical inputs and runs through
    ``F.scaled_dot_product_attention`` (or, for one query row, without projecting the keys and values), with its
    projections through oneDNN on the CPU (where its attention is a ``FastMultiheadAttention``)."""

    def _project(self, x: torch.Tensor, part: str) -> torch.Tensor:
        if isinstance(self.mha, FastMultiheadAttention):
            return self.mha.project(x, part)
        first, last = (index * self.mha.embed_dim for index in _PARTS[part])
        return F.linear(x, self.mha.in_proj_weight[first:last], self.mha.in_proj_bias[first:last])

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha.out_proj(x)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.training:
            if isinstance(self.mha, KeepsDerivedValues) and self.mha.in_proj_weight.requires_grad:
                self.mha.forget_derived()
            return super().attend(q, k, v, mask)
        if q.shape[1] == 1 and k.shape[1] > self.mha.num_heads:
            return self._single_query_attention(q, k, v, mask)
        return self._fused_attention(q, k, v, mask)

    def _fused_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: torch.Tensor | None) -> torch.Tensor:
        """Projections shared by identical inputs are computed once (one matmul for q = k = v, one for k = v). A
        query whose keys are all masked gets an undefined row (NaN or zero); the block zeroes it."""
        heads, dim = self.mha.num_heads, q.shape[-1]
        if q is k and k is v:
            q_p, k_p, v_p = self._project(q, "qkv").chunk(3, dim=-1)
        elif k is v:
            q_p = self._project(q, "q")
            k_p, v_p = self._project(k, "kv").chunk(2, dim=-1)
        elif q is k:
            q_p, k_p = self._project(q, "qk").chunk(2, dim=-1)
            v_p = self._project(v, "v")
        else:
            q_p, k_p, v_p = self._project(q, "q"), self._project(k, "k"), self._project(v, "v")

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (heads, dim // heads)).transpose(1, 2)

        keep = None if mask is None else ~mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(split_heads(q_p), split_heads(k_p), split_heads(v_p),
                                                  attn_mask=keep)
        return self._output(attended.transpose(1, 2).flatten(2))

    def _single_query_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                mask: torch.Tensor | None) -> torch.Tensor:
        """One query row per sequence (q (B, 1, C)), without projecting the keys and values.

        Per head h, q_h . (W_k,h k_j + b_k,h) = (W_k,h^T q_h) . k_j + q_h . b_k,h, and the last term is the same
        for every key, so softmax drops it; the attention-weighted sum of W_v,h v_j + b_v,h is
        W_v,h (sum_j a_j v_j) + b_v,h, the weights summing to one. So the query is carried into the keys' space
        and the weighted sum is projected once: O(heads * C * L) per sequence instead of O(C^2 * L). A query whose
        keys are all masked attends to nothing (zero weights, no NaN, nor NaN gradients).
        """
        batch, _, dim = q.shape
        heads = self.mha.num_heads
        head_dim = dim // heads
        weight, bias = self.mha.in_proj_weight, self.mha.in_proj_bias
        q_p = self._project(q, "q").view(batch, heads, head_dim) * head_dim**-0.5
        key_weight = weight[dim:2 * dim].view(heads, head_dim, dim)
        value_weight = weight[2 * dim:].view(heads, head_dim, dim)
        query_in_key_space = torch.einsum("bhe,hec->bhc", q_p, key_weight)  # (B, heads, C)
        scores = torch.bmm(query_in_key_space, k.transpose(1, 2))  # (B, heads, L)
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        if mask is not None:
            weights = weights.masked_fill(mask.all(dim=1)[:, None, None], 0.0)
        mixed_values = torch.bmm(weights, v)  # (B, heads, C)
        attended = torch.einsum("bhc,hec->bhe", mixed_values, value_weight).reshape(batch, 1, dim) + bias[2 * dim:]
        return self._output(attended)


class FastDMSMHABlock(FastFeedForward, DMSMHABlock):
    """``DMSMHABlock`` with the fast feed-forward (its deformable attention has its own fast form)."""
