"""One layer of the verifier's decoder: a query attends to its candidates within each frame, then over time."""

from __future__ import annotations

import torch
import torch.nn as nn


class CandidateTemporalLayer(nn.Module):
    """Post-norm: attention from the query to its M candidates (per frame), attention over the frames (per point,
    frames before the query's masked as keys), then a GELU (tanh) feed-forward. Reference parameter names."""

    def __init__(self, hidden_size: int, num_heads: int, attn_drop: float = 0.1, mlp_drop: float = 0.1):
        super().__init__()
        self.mha1 = nn.MultiheadAttention(hidden_size, num_heads, attn_drop, batch_first=True)
        self.mha2 = nn.MultiheadAttention(hidden_size, num_heads, attn_drop, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.norm3 = nn.LayerNorm(hidden_size)
        self.dropout1 = nn.Dropout(attn_drop)
        self.dropout2 = nn.Dropout(attn_drop)
        self.dropout3 = nn.Dropout(attn_drop)
        self.linear1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.linear2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(mlp_drop)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, q: torch.Tensor, candidates: torch.Tensor, time_embedding: torch.Tensor,
                before_query: torch.Tensor) -> torch.Tensor:
        """q (B, T, N, D), candidates (B, T, N, M, D), time_embedding (1, T, D), before_query (B, N, T) True for
        frames before the point's query frame -> (B, T, N, D)."""
        batch, frames, points, count, dim = candidates.shape
        rows = q.reshape(batch * frames * points, 1, dim)
        keys = candidates.reshape(batch * frames * points, count, dim)
        attended = self.mha1(rows, keys, keys, need_weights=False)[0]
        rows = self.norm1(rows + self.dropout1(attended))
        series = rows.view(batch, frames, points, dim).transpose(1, 2).reshape(batch * points, frames, dim)
        timed = series + time_embedding
        attended = self.mha2(timed, timed, series, key_padding_mask=before_query.reshape(batch * points, frames),
                             need_weights=False)[0]
        series = self.norm2(series + self.dropout2(attended))
        q = series.view(batch, points, frames, dim).transpose(1, 2)
        ffn = self.linear2(self.dropout(self.act(self.linear1(q))))
        return self.norm3(q + self.dropout3(ffn))
