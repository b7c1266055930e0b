"""Track-On2: an online point tracker with per-query memory, in plain PyTorch.

Each frame is encoded once (ViT-Adapter backbone + FPN). Every started query decodes its feature by attending
to the frame, to the other queries and to its own memory of past decoded features; the decoded query is matched
against the frame by multi-scale correlation, the top-K peaks are re-ranked, and a prediction head refines the
chosen patch to a point and predicts visibility and uncertainty. The query's final feature is then written into
its memory (``model.memory``: first in, first out).

This file is the formulation to read. Faster forms of the same functions (``runtime.fast``) replace some of
these methods in subclasses that fall back to them; the online runtime (``runtime``) drives the step frame by
frame for streams and whole videos.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackon2.model.backbone import Backbone, FeaturePyramid
from trackon2.model.blocks import MHABlock, SimpleFPN
from trackon2.model.config import ModelConfig
from trackon2.model.heads import STRIDE, MultiScaleContext, PredictionHead, RerankModule, patch_centres
from trackon2.model.inputs import check_queries, check_video
from trackon2.model.memory import QueryMemory
from trackon2.model.stages import stage

Columns = slice | torch.Tensor  # query columns: slice(None) for all of them, else a long index tensor


@dataclass
class FrameFeatures:
    """One frame's features for a batch: the pyramid (each (B, tokens, D)) and the fused stride-4 map (B, P, D)."""

    pyramid: FeaturePyramid
    fused: torch.Tensor


@dataclass
class StepOutput:
    """Per-frame predictions for the queries that were decoded, all in model-input pixels."""

    c1: torch.Tensor  # (B, n, P)
    c2: torch.Tensor  # (B, n, P)
    offsets: torch.Tensor  # (B, layers, n, 2)
    v_logit: torch.Tensor  # (B, n)
    u_logit: torch.Tensor  # (B, n)
    p_patch: torch.Tensor  # (B, n, 2)
    u_logit_top_k: torch.Tensor  # (B, n, K)
    s_logit_top_k: torch.Tensor  # (B, n, K)
    p_patch_top_k: torch.Tensor  # (B, n, K, 2)
    q: torch.Tensor  # (B, n, D), the feature stored in memory

    @property
    def points(self) -> torch.Tensor:
        return self.p_patch + self.offsets[:, -1]


def active_columns(active: torch.Tensor) -> Columns | None:
    """Columns of the queries active in some video of the batch (B, N): all (a slice), some, or none (None)."""
    any_video = active.any(0)
    if bool(any_video.all()):
        return slice(None)
    if not bool(any_video.any()):
        return None
    return any_video.nonzero(as_tuple=True)[0]


class TrackOn2(nn.Module):
    def __init__(self, config: ModelConfig, nhead: int = 4, vit_train_mode: bool = False):
        """``vit_train_mode`` lets the frozen ViT follow train() as in the reference (a training switch)."""
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"TrackOn2 takes a ModelConfig, got {type(config).__name__} (build one with "
                            "ModelConfig.from_yaml / from_dict / from_namespace)")
        self.K, self.D, self.M = config.K, config.D, config.M
        self.decoder_layer_num = config.decoder_layer_num
        self.input_size = config.input_size
        self.H, self.W = self.input_size
        self.Hf, self.Wf = self.H // STRIDE, self.W // STRIDE
        self.P = self.Hf * self.Wf
        if self.K > self.P:
            raise ValueError(f"K ({self.K}) cannot exceed the number of stride-4 patches ({self.P})")

        self.backbone = Backbone(self.D, self.input_size, config.vit_backbone, config.vit_upsample_factor,
                                 config.backbone_config, config.grad_checkpoint, vit_train_mode)
        self.fpn = SimpleFPN(self.D)
        self.reranking_head = RerankModule(self.D, self.K, config.rerank_layer_num, self.W, nhead)
        self.prediction_head = PredictionHead(self.D, config.predicton_head_layer_num, nhead)
        self.feature_attention = nn.ModuleList([MHABlock(self.D, nhead) for _ in range(self.decoder_layer_num)])
        self.query_attention = nn.ModuleList([MHABlock(self.D, nhead) for _ in range(self.decoder_layer_num)])
        self.memory_attention = nn.ModuleList([MHABlock(self.D, nhead) for _ in range(self.decoder_layer_num)])
        self.projection1 = nn.Linear(self.D, self.D)
        self.projection2 = nn.Linear(self.D, self.D)
        self.ms_corr_proj = nn.Conv2d(4, 1, kernel_size=1)
        self.t_embedding = nn.Parameter(torch.zeros(1, self.M + 1, self.D))
        nn.init.trunc_normal_(self.t_embedding, std=0.02)

    def time_embedding(self, memory_size: int) -> torch.Tensor:
        """The temporal embedding for a memory of ``memory_size`` slots plus the current one (1, size + 1, D).

        Trained for M slots; for another size (inference-time memory extension) the rows of the past slots are
        linearly resampled, the current slot's row kept. The parameter itself never changes size.
        """
        if memory_size < 1:
            raise ValueError(f"memory size must be positive, got {memory_size}")
        if memory_size == self.M:
            return self.t_embedding
        past, now = self.t_embedding[:, :-1], self.t_embedding[:, -1:]
        resized = F.interpolate(past.transpose(1, 2), size=memory_size, mode="linear", align_corners=True)
        return torch.cat([resized.transpose(1, 2), now], dim=1)

    # ------------------------------------------------------------------------------------------------- encoding
    def resize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H_in, W_in) in 0..255 -> (N, 3, H, W) in [0, 1] at the model input size."""
        return F.interpolate(frames / 255.0, size=self.input_size, mode="bilinear", align_corners=False)

    def encode(self, frames: torch.Tensor) -> FrameFeatures:
        """Encode (N, 3, H, W) frames in [0, 1] at the model input size."""
        with stage("vit_adapter_fpn"):
            pyramid = self.backbone(frames)
            maps = [tokens.transpose(1, 2).unflatten(2, shape) for tokens, shape in zip(pyramid, self.level_shapes())]
            fused = self.fpn(*maps).flatten(2).transpose(1, 2).contiguous()
        return FrameFeatures(pyramid, fused)

    def level_shapes(self) -> list[tuple[int, int]]:
        return [(self.Hf >> level, self.Wf >> level) for level in range(4)]

    def sample_query_features(self, fused: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Bilinearly sample the fused map (B, P, D) at normalised (x, y) in [0, 1] (B, n, 2) -> (B, n, D)."""
        feature_map = fused.transpose(1, 2).unflatten(2, (self.Hf, self.Wf))
        grid = (coords * 2 - 1).unsqueeze(2).to(fused.dtype)
        sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.squeeze(-1).transpose(1, 2)

    # --------------------------------------------------------------------------------------------- one frame step
    def start_queries(self, q_init: torch.Tensor, features: FrameFeatures, coords: torch.Tensor,
                      starting: torch.Tensor, columns: Columns | None) -> torch.Tensor:
        """``q_init`` (B, N, D) with the queries flagged in ``starting`` (B, N), all within ``columns``, sampled
        from this frame at normalised ``coords`` (B, N, 2)."""
        if columns is None:
            return q_init
        sampled = self.sample_query_features(features.fused, coords[:, columns]).to(q_init.dtype)
        q_init = q_init.clone()
        q_init[:, columns] = torch.where(starting[:, columns].unsqueeze(-1), sampled, q_init[:, columns])
        return q_init

    def decode(self, q: torch.Tensor, features: FrameFeatures, memory: QueryMemory,
               query_mask: torch.Tensor | None, p_mask: float = 0.0) -> StepOutput:
        """Track n queries on this frame: their start features ``q`` (B, n, D) and memories (B, n, L slots).

        ``query_mask`` (B, n) hides queries not active in a video from the others' self-attention (None: all
        active). ``p_mask`` drops memory slots at random (training).
        """
        batch, num, dim = q.shape
        t_embedding = self.time_embedding(memory.capacity)[:, memory.first_slot:]
        slots = memory.features.shape[2]
        rows = memory.features.reshape(batch * num, slots, dim)
        memory_mask = memory.empty.reshape(batch * num, slots)
        current_slot = memory_mask.new_zeros(batch * num, 1)
        for i in range(self.decoder_layer_num):
            with stage("feature_query_attention_head"):
                q = self.feature_attention[i](q, features.fused, features.fused)
                q = self.query_attention[i](q, q, q, query_mask)
            with stage("memory_attention"):
                if p_mask > 0:
                    noised = memory_mask | (torch.rand(memory_mask.shape, device=q.device) < p_mask)
                else:
                    noised = memory_mask
                key_mask = torch.cat([noised, current_slot], dim=1)
                rows, q = self.attend_memory(i, rows, q.reshape(batch * num, dim), t_embedding, key_mask,
                                             last=i == self.decoder_layer_num - 1)
                q = q.reshape(batch, num, dim)
        with stage("feature_query_attention_head"):
            q = self.projection1(q)

        context = MultiScaleContext(feats=torch.cat(list(features.pyramid), dim=1), shapes=self.level_shapes(),
                                    size_wh=(self.W, self.H))
        with stage("multiscale_correlation"):
            c1 = self.correlation(q, features)
        with stage("reranking"):
            reranked = self.reranking_head(q, context, c1)
        with stage("feature_query_attention_head"):
            q = self.projection2(reranked.q)
        with stage("multiscale_correlation"):
            c2 = self.correlation(q, features)
        with stage("feature_query_attention_head"):
            p_patch = patch_centres(torch.argmax(c2.detach(), dim=-1), self.Wf, q.dtype)
            offsets, v_logit, u_logit = self.prediction_head(q, context, p_patch)
        return StepOutput(c1, c2, offsets, v_logit, u_logit, p_patch, reranked.u_logit_top_k,
                          reranked.s_logit_top_k, reranked.p_patch_top_k, q)

    def attend_memory(self, layer: int, rows: torch.Tensor, q: torch.Tensor, t_embedding: torch.Tensor,
                      key_mask: torch.Tensor, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory attention of ``layer`` over S sequences, each its memory rows (S, L, D) and then the query (S, D).

        Keys and queries carry the temporal embedding, values do not; a masked slot is ignored (the query's own
        slot never is). Returns the layer's output for the memory rows (the next layer's memory) and the query's.
        ``last``: the memory rows' outputs are not needed after this layer.
        """
        sequence = torch.cat([rows, q.unsqueeze(1)], dim=1)
        keyed = sequence + t_embedding
        out = self.memory_attention[layer](keyed, keyed, sequence, key_mask)
        return out[:, :-1], out[:, -1]

    def correlation(self, q: torch.Tensor, features: FrameFeatures) -> torch.Tensor:
        """Multi-scale cosine correlation of q (B, n, D) with the frame -> (B, n, P) at stride 4.

        Per level, the cosine similarity of every query with every token; the coarser maps are bilinearly
        upsampled to stride 4 and the four maps fused by a 1x1 convolution.
        """
        batch, num, _ = q.shape
        q_normalised = F.normalize(q, p=2, dim=-1)
        maps = []
        for tokens, shape in zip(features.pyramid, self.level_shapes()):
            similarity = q_normalised @ F.normalize(tokens, p=2, dim=-1).transpose(1, 2)
            level_map = similarity.reshape(batch * num, 1, *shape)
            if shape != (self.Hf, self.Wf):
                level_map = F.interpolate(level_map, size=(self.Hf, self.Wf), mode="bilinear", align_corners=False)
            maps.append(level_map)
        return self.ms_corr_proj(torch.cat(maps, dim=1)).view(batch, num, self.P)

    def write_memory(self, memory: QueryMemory, columns: Columns, q: torch.Tensor, active: torch.Tensor) -> None:
        """Write this frame's decoded features ``q`` (B, n, D) of the queries at ``columns``; queries not active
        (B, N) get an empty slot."""
        newest = memory.features.new_zeros(*active.shape, q.shape[-1])
        newest[:, columns] = q.to(newest.dtype)
        memory.write(newest, active)

    # -------------------------------------------------------------------------------------------- whole clips
    def _prepare(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate inputs; return query times (B, N) and query coordinates normalised to [0, 1] (B, N, 2)."""
        check_video(video)
        batch, num_frames, _, height, width = video.shape
        check_queries(queries, batch, num_frames, height, width)
        scale = torch.tensor([width, height], dtype=queries.dtype, device=queries.device)
        return queries[..., 0].long(), queries[..., 1:] / scale

    def to_input_pixels(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        scale = torch.tensor([width / self.W, height / self.H], dtype=points.dtype, device=points.device)
        return points * scale

    def _track_clip(self, frames: Iterable[FrameFeatures], times: torch.Tensor, coords: torch.Tensor,
                    memory_size: int, p_mask: float) -> Iterator[tuple[Columns | None, StepOutput | None, torch.Tensor]]:
        """Step through a clip's encoded frames: per frame the decoded columns, their outputs (None when no
        query has started yet) and the active mask (B, N)."""
        q_init = memory = None
        for t, features in enumerate(frames):
            if memory is None:
                q_init = features.fused.new_zeros(*times.shape, self.D)
                memory = QueryMemory.empty_like(*times.shape, memory_size, q_init)
            starting, active = times == t, times <= t
            q_init = self.start_queries(q_init, features, coords, starting, active_columns(starting))
            columns = active_columns(active)
            if columns is None:
                yield None, None, active
                continue
            query_mask = None if bool(active[:, columns].all()) else ~active[:, columns]
            step = self.decode(q_init[:, columns], features, memory.columns(columns), query_mask, p_mask)
            self.write_memory(memory, columns, step.q, active)
            yield columns, step, active

    def forward(self, video: torch.Tensor, queries: torch.Tensor, p_mask: float = 0.1) -> dict[str, torch.Tensor]:
        """Training forward over a whole clip.

        video (B, T, 3, H_in, W_in) in 0..255; queries (B, N, 3) as (t, x, y) in input pixels. Returns P (B, T, N,
        2) in input pixels and the per-frame outputs the loss needs (``TRAINING_KEYS``, model-input pixels);
        entries of queries that have not started yet are zero.
        """
        times, coords = self._prepare(video, queries)
        batch, num_frames, _, height, width = video.shape
        features = self.encode(self.resize_frames(video.flatten(0, 1)))
        per_frame = [t.unflatten(0, (batch, num_frames)) for t in [*features.pyramid, features.fused]]
        frames = [FrameFeatures(FeaturePyramid(*(level[:, t] for level in per_frame[:4])), per_frame[4][:, t])
                  for t in range(num_frames)]
        outputs = [self._scatter(step, columns, active, video.dtype, TRAINING_KEYS)
                   for columns, step, active in self._track_clip(frames, times, coords, self.M, p_mask)]
        out = {key: torch.stack([frame[key] for frame in outputs], dim=1) for key in TRAINING_KEYS}
        out["P"] = self.to_input_pixels(out["P_patch"] + out["O"][:, :, -1], height, width)
        return {key: out[key] for key in ("P", *TRAINING_KEYS)}

    @torch.no_grad()
    def forward_online(self, video: torch.Tensor, queries: torch.Tensor,
                       memory_size: int | None = None) -> dict[str, torch.Tensor]:
        """Frame-by-frame inference, each frame encoded on arrival: P (input pixels), V_logit, U_logit, each
        (B, T, N, ...); zero before a query's start frame. ``memory_size``: M_i (default M)."""
        times, coords = self._prepare(video, queries)
        height, width = video.shape[-2:]
        frames = (self.encode(self.resize_frames(video[:, t])) for t in range(video.shape[1]))
        steps = self._track_clip(frames, times, coords, memory_size or self.M, 0.0)
        per_frame = [self._scatter(step, columns, active, video.dtype, ("P_patch", "O", "V_logit", "U_logit"))
                     for columns, step, active in steps]
        points = torch.stack([frame["P_patch"] + frame["O"][:, -1] for frame in per_frame], dim=1)
        return {"P": self.to_input_pixels(points, height, width),
                "V_logit": torch.stack([frame["V_logit"] for frame in per_frame], dim=1),
                "U_logit": torch.stack([frame["U_logit"] for frame in per_frame], dim=1)}

    def _scatter(self, step: StepOutput | None, columns: Columns | None, active: torch.Tensor,
                 dtype: torch.dtype, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """One frame's outputs at their columns among all N queries; entries of inactive queries are zero."""
        batch, num = active.shape
        if step is None:
            layers = self.prediction_head.layer_num
            shapes = {"C1": (batch, num, self.P), "C2": (batch, num, self.P), "O": (batch, layers, num, 2),
                      "V_logit": (batch, num), "U_logit": (batch, num), "P_patch": (batch, num, 2),
                      "U_logit_top_k": (batch, num, self.K), "S_logit_top_k": (batch, num, self.K),
                      "P_patch_top_k": (batch, num, self.K, 2)}
            return {key: active.new_zeros(shapes[key], dtype=dtype) for key in keys}
        keep = active[:, columns]
        values = {"C1": step.c1, "C2": step.c2, "O": step.offsets, "V_logit": step.v_logit,
                  "U_logit": step.u_logit, "P_patch": step.p_patch, "U_logit_top_k": step.u_logit_top_k,
                  "S_logit_top_k": step.s_logit_top_k, "P_patch_top_k": step.p_patch_top_k}
        return {key: scatter_columns(values[key], columns, keep, num, 2 if key == "O" else 1, dtype) for key in keys}


TRAINING_KEYS = ("C1", "C2", "O", "V_logit", "U_logit", "P_patch", "U_logit_top_k", "S_logit_top_k",
                 "P_patch_top_k")


def scatter_columns(value: torch.Tensor, columns: Columns, keep: torch.Tensor, num: int, query_dim: int,
                    dtype: torch.dtype) -> torch.Tensor:
    """``value`` of n decoded queries (on ``query_dim``) placed at ``columns`` among ``num``; zero where ``keep``
    (B, n) is False and at the other columns."""
    shape = list(value.shape)
    shape[query_dim] = num
    full = value.new_zeros(shape, dtype=dtype)
    index = [slice(None)] * len(shape)
    index[query_dim] = columns
    mask_shape = [keep.shape[0]] + [1] * (len(shape) - 1)
    mask_shape[query_dim] = value.shape[query_dim]
    full[tuple(index)] = torch.where(keep.view(mask_shape), value.to(dtype), 0.0)
    return full
