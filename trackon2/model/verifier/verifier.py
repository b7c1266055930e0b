"""The verifier: scores, frame by frame, how well each of M candidate tracks of a point follows its query.

For each point it builds a query descriptor (the CNN feature at the query, refined by the local encoder on the
query frame) and, on every frame, one candidate descriptor per candidate track (the local encoder around the
candidate's position, started from the query's CNN feature, plus an embedding of the candidate's displacement from
the query). A decoder lets the query attend to its candidates within each frame and to itself over time; the
score of a candidate is the scaled cosine similarity of the decoded query and the candidate's descriptor.

Parameter names and shapes are the reference's, so its released ``verifier.pt`` loads strictly. Unlike the
reference it takes batches (each video's scores equal scoring it alone) and never modifies its inputs; frames are
encoded in chunks (``frames_per_pass``), as the reference's memory-saving ``efficient_forward`` does.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackon2.model.inputs import InputError, check_queries, check_video
from trackon2.model.verifier.basic_encoder import BasicEncoder
from trackon2.model.verifier.config import HEADS, POS_EMBED_DIM, STRIDE, VerifierConfig
from trackon2.model.verifier.decoder_layer import CandidateTemporalLayer
from trackon2.model.verifier.local_encoder import LocalEncoder, displacement_embedding, feature_pyramid, sample_points

DISPLACEMENT_BANDS = POS_EMBED_DIM // 4
DISPLACEMENT_MAX_FREQ = 32.0
FRAMES_PER_PASS = 500


class Verifier(nn.Module):
    """(video, candidate tracks, queries) -> rank logits (B, T, N, M); higher means a better candidate."""

    def __init__(self, config: VerifierConfig | None = None, p_drop: float = 0.1):
        super().__init__()
        self.config = config = config or VerifierConfig()
        dim = config.verifier_embedding_dim
        self.cnn_encoder = BasicEncoder(input_dim=3, output_dim=config.cnn_encoder_dim, stride=STRIDE)
        self.backbone_projection = nn.Conv2d(config.cnn_encoder_dim, dim, kernel_size=1)
        self.time_emb = nn.Parameter(torch.zeros(1, config.T, dim))
        nn.init.trunc_normal_(self.time_emb, std=0.02)
        self.local_encoder = LocalEncoder(dim, config.local_encoder_num_layers, p_drop)
        self.candidate_emb = nn.Embedding(2, POS_EMBED_DIM) if config.query_critic == "feature" else None
        self.displacement_scale = nn.Parameter(torch.tensor(16.0))
        descriptor = config.local_descriptor_dim
        self.local_projection = nn.Sequential(nn.LayerNorm(descriptor), nn.Linear(descriptor, dim))
        self.layers = nn.ModuleList(CandidateTemporalLayer(dim, HEADS, p_drop, p_drop)
                                    for _ in range(config.verifier_num_layers))
        self.sim_scale_raw = nn.Parameter(torch.tensor(10.0))
        self.q_projection = nn.Linear(dim, dim, bias=False)
        self.f_projection = nn.Linear(dim, dim, bias=False)

    def sim_scale(self) -> torch.Tensor:
        """The similarity temperature, softplus(raw) + 1 kept in [1, 20]."""
        return (F.softplus(self.sim_scale_raw) + 1.0).clamp(1.0, 20.0)

    def time_embedding(self, frames: int) -> torch.Tensor:
        """(1, frames, D): the learned embedding, resampled linearly (corners not aligned) when frames != T."""
        if frames == self.time_emb.shape[1]:
            return self.time_emb
        resized = F.interpolate(self.time_emb.transpose(1, 2), size=frames, mode="linear", align_corners=False)
        return resized.transpose(1, 2)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(K, 3, H, W) frames in 0..255 -> (K, D, H', W') projected CNN features at the verifier's input size."""
        normalised = frames / 255.0 * 2 - 1
        resized = F.interpolate(normalised, size=self.config.verifier_input_size, mode="bilinear",
                                align_corners=False)
        return self.backbone_projection(self.cnn_encoder(resized))

    def _encode(self, frames: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, 3, H, W) frames -> features (K, D, H', W') and their pyramids (K, P_total, D)."""
        features = self.encode_frames(frames.to(dtype))
        return features, feature_pyramid(features)

    def _descriptor(self, local: torch.Tensor, displacement: torch.Tensor, critic_row: int) -> torch.Tensor:
        """Local features, displacement embedding and (critic ``feature``) the query/candidate embedding."""
        parts = [local, displacement_embedding(displacement * self.displacement_scale, DISPLACEMENT_BANDS,
                                               DISPLACEMENT_MAX_FREQ)]
        if self.candidate_emb is not None:
            parts.append(self.candidate_emb.weight[critic_row].expand(*local.shape[:-1], -1))
        return torch.cat(parts, dim=-1)

    def forward(self, video: torch.Tensor, tracks: torch.Tensor, queries: torch.Tensor,
                frames_per_pass: int = FRAMES_PER_PASS) -> torch.Tensor:
        """video (B, T, 3, H, W) 0..255, tracks (B, T, N, M, 2) and queries (B, N, 3) as (t, x, y) in video pixels
        -> rank logits (B, T, N, M). Inputs are not modified."""
        self._check_inputs(video, tracks, queries, frames_per_pass)
        batch, frames, _, height, width = video.shape
        points, count = tracks.shape[2], tracks.shape[3]
        dtype = self.time_emb.dtype
        scale = torch.tensor([2.0 / width, 2.0 / height], dtype=dtype, device=video.device)
        track_xy = tracks.to(dtype) * scale - 1  # [-1, 1]
        query_xy = queries[..., 1:].to(dtype) * scale - 1
        query_frames = queries[..., 0].long()
        shapes = self.config.spatial_shapes
        whole = self._encode(video.flatten(0, 1), dtype) if frames <= frames_per_pass else None

        def encoded(frame_list: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
            """Features (K, D, H', W') and pyramids (K, P_total, D) of the (video, frame) pairs."""
            if whole is not None:
                flat = torch.tensor([b * frames + t for b, t in frame_list], device=video.device)
                return whole[0][flat], whole[1][flat]
            return self._encode(torch.stack([video[b, t] for b, t in frame_list]), dtype)

        # 1) Query descriptors, from the query frames only.
        pairs = [(b, t) for b in range(batch) for t in torch.unique(query_frames[b]).tolist()]
        point_rows, query_features, query_descriptors = [], [], []
        for first in range(0, len(pairs), frames_per_pass):
            group = pairs[first:first + frames_per_pass]
            features, pyramids = encoded(group)
            for k, (b, t) in enumerate(group):
                index = torch.nonzero(query_frames[b] == t).flatten()
                xy = query_xy[b, index].unsqueeze(0)
                sampled = sample_points(features[k:k + 1], xy)  # (1, n_t, D)
                local = self.local_encoder(sampled, pyramids[k:k + 1], xy, shapes)
                point_rows.append(b * points + index)
                query_features.append(sampled[0])
                query_descriptors.append(self._descriptor(local[0], torch.zeros_like(xy[0]), 0))
        rows = torch.cat(point_rows)
        q_init = self._scatter(rows, torch.cat(query_features), batch * points)
        q_init = q_init.view(batch, points, 1, -1).expand(-1, -1, count, -1).reshape(batch, points * count, -1)

        # 2) Candidate descriptors, frame by frame, from the query's CNN feature at each candidate's position.
        candidate_descriptors = []
        for start in range(0, frames, frames_per_pass):
            stop = min(frames, start + frames_per_pass)
            _, pyramids = encoded([(b, t) for b in range(batch) for t in range(start, stop)])
            pyramids = pyramids.unflatten(0, (batch, stop - start))
            for t in range(start, stop):
                local = self.local_encoder(q_init, pyramids[:, t - start], track_xy[:, t].flatten(1, 2), shapes)
                displacement = track_xy[:, t] - query_xy.unsqueeze(2)
                candidate_descriptors.append(self._descriptor(local.view(batch, points, count, -1), displacement, 1))
        q = self._scatter(rows, torch.cat(query_descriptors), batch * points).view(batch, points, -1)
        f = self.local_projection(torch.stack(candidate_descriptors, dim=1))  # (B, T, N, M, D)
        q = self.local_projection(q).unsqueeze(1).expand(-1, frames, -1, -1)  # (B, T, N, D)
        before_query = torch.arange(frames, device=video.device) < query_frames.unsqueeze(2)  # (B, N, T)
        time_embedding = self.time_embedding(frames)
        for layer in self.layers:
            q = layer(q, f, time_embedding, before_query)
        q = F.normalize(self.q_projection(q), p=2, dim=-1)
        f = F.normalize(self.f_projection(f), p=2, dim=-1)
        return torch.einsum("btnd,btnmd->btnm", q, f) * self.sim_scale()

    @staticmethod
    def _scatter(rows: torch.Tensor, values: torch.Tensor, total: int) -> torch.Tensor:
        """(total, C) with row ``rows[i]`` = ``values[i]`` (every row is written once: one query frame per point)."""
        return values.new_zeros(total, values.shape[-1]).index_copy(0, rows, values)

    @staticmethod
    def _check_inputs(video: torch.Tensor, tracks: torch.Tensor, queries: torch.Tensor, frames_per_pass: int) -> None:
        check_video(video)
        batch, frames, _, height, width = video.shape
        if not isinstance(tracks, torch.Tensor) or tracks.dim() != 5 or tracks.shape[-1] != 2 \
                or tuple(tracks.shape[:2]) != (batch, frames) or min(tracks.shape) == 0:
            shape = tuple(tracks.shape) if isinstance(tracks, torch.Tensor) else type(tracks).__name__
            raise InputError(f"candidate tracks must have shape (B={batch}, T={frames}, N, M, 2), got {shape}")
        if not bool(torch.isfinite(tracks).all()):
            raise InputError("candidate tracks contain NaN or infinite values")
        check_queries(queries, batch, frames, height, width, allow_outside=True)
        if queries.shape[1] != tracks.shape[2]:
            raise InputError(f"queries have {queries.shape[1]} points but the candidate tracks {tracks.shape[2]}")
        if not isinstance(frames_per_pass, int) or frames_per_pass < 1:
            raise InputError(f"frames_per_pass must be a positive integer, got {frames_per_pass!r}")
