"""Track-On2: an online point tracker with per-query memory.

Each frame is encoded once (ViT-Adapter backbone + FPN). Every started query decodes its feature by attending
to the frame, to the other queries and to its own memory of past decoded features; the decoded query is matched
against the frame by multi-scale correlation, the top-K peaks are re-ranked, and a prediction head refines the
chosen patch to a point and predicts visibility and uncertainty. The query's final feature is then pushed into
its memory (FIFO of length M).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from model.backbone import Backbone, FeaturePyramid
from model.blocks import MHABlock, SimpleFPN
from model.config import ModelConfig
from model.heads import STRIDE, MultiScaleContext, PredictionHead, RerankModule, patch_centres
from model.inputs import check_queries, check_video
from model.onednn import onednn_applies, rows_product


@dataclass
class FrameFeatures:
    """One frame's features for a batch: the pyramid (each (B, tokens, D)) and the fused stride-4 map (B, P, D)."""

    pyramid: FeaturePyramid
    fused: torch.Tensor


@dataclass
class TrackerState:
    """Per-query state carried from frame to frame (B batch, N queries, M memory slots)."""

    q_init: torch.Tensor  # (B, N, D) query features sampled on their start frame
    memory: torch.Tensor  # (B, N, M, D) past decoded features, newest last
    memory_mask: torch.Tensor  # (B, N, M) True where a slot is empty
    started: torch.Tensor  # (B, N) bool

    def extend(self, other: "TrackerState") -> None:
        """Append ``other``'s queries (same batch, memory size and dtype) after this state's."""
        for field in fields(self):
            setattr(self, field.name, torch.cat([getattr(self, field.name), getattr(other, field.name)], dim=1))

    def select(self, columns: torch.Tensor) -> None:
        """Keep only the queries at ``columns`` (a long index over N), in that order."""
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name)[:, columns])


Columns = slice | torch.Tensor  # query columns: slice(None) for all of them, else a long index tensor


# Each window ``slide_in`` returned and has not yet moved on -> (its buffer, its first slot in the buffer).
_LATEST_WINDOWS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def slide_in(window: torch.Tensor, newest: torch.Tensor) -> torch.Tensor:
    """``window`` (B, N, M, ...) without its oldest slot and with ``newest`` (B, N, 1, ...) appended on dim 2.

    Without gradients the result is a view into a buffer of M + M // 4 slots (at least M + 1): sliding the window
    ``slide_in`` returned last writes the slot after it and moves the view by one, and only when the buffer is
    used up (every M // 4 calls) is the window copied into a new one, where ``torch.cat`` would copy the whole
    memory on every frame. Any other window (a new, extended or selected state, one that has already slid, or an
    inference tensor outside inference mode) is copied into a new buffer too, so no tensor but the buffer is ever
    written. With gradients it is ``torch.cat`` (autograd forbids writing into a buffer whose views it saved).
    """
    if window.numel() == 0 or (torch.is_grad_enabled() and (window.requires_grad or newest.requires_grad)):
        return torch.cat([window[:, :, 1:], newest], dim=2)
    slots = window.shape[2]
    latest = _LATEST_WINDOWS.pop(window, None)
    writable = torch.is_inference_mode_enabled() or not window.is_inference()
    if latest is not None and writable and latest[1] + slots < latest[0].shape[2]:
        buffer, start = latest
    else:
        buffer = window.new_empty(*window.shape[:2], slots + max(1, slots // 4), *window.shape[3:])
        buffer[:, :, :slots] = window
        start = 0
    buffer[:, :, start + slots] = newest[:, :, 0]
    moved = buffer[:, :, start + 1:start + 1 + slots]
    _LATEST_WINDOWS[moved] = (buffer, start + 1)
    return moved


# Rows (sequence slots) per chunk of memory attention on the CPU: the FFN's hidden tensor stays cache-sized.
MEMORY_CHUNK_ROWS = 1024


@dataclass(frozen=True)
class StepPlan:
    """What one frame step does, decided up front so that the step itself never reads device values back.

    ``start``: columns where a query starts in some batch element (None: no query starts); ``decode``: columns
    active in some batch element (None: nothing to track); ``all_active``: every decoded query is active in every
    batch element, so no query mask is needed; ``empty_slots``: leading memory slots that are empty for every decoded
    query (their keys are masked, so skipping them is exact).
    """

    start: Columns | None
    decode: Columns | None
    all_active: bool
    empty_slots: int = 0

    @staticmethod
    def _columns(flags: torch.Tensor, device: torch.device) -> Columns | None:
        """Columns where ``flags`` (B, N) is set in some row: all (a slice), some (indices), or none (None)."""
        any_row = flags.any(0)
        if bool(any_row.all()):
            return slice(None)
        if not bool(any_row.any()):
            return None
        return any_row.nonzero(as_tuple=True)[0].to(device)

    @staticmethod
    def _uniform(active: torch.Tensor) -> bool:
        """Whether each query is active in every batch element or in none."""
        return bool((active.all(0) | ~active.any(0)).all())

    @classmethod
    def from_masks(cls, starting: torch.Tensor, active: torch.Tensor) -> "StepPlan":
        """The plan read from (B, N) device masks (this reads them back: it synchronises a GPU)."""
        return cls(cls._columns(starting, starting.device), cls._columns(active, active.device),
                   cls._uniform(active))

    @classmethod
    def from_times(cls, times: torch.Tensor, t: int, memory_size: int, device: torch.device) -> "StepPlan":
        """The plan of frame ``t`` from the queries' start frames ``times`` (B, N) held on the host.

        A query started at frame s has min(t - s, M) filled slots at frame t (newest last), so the slots before
        the earliest active query's fill are empty for every query. They are skipped on the CPU only: on a GPU the
        saving is small and a sequence length that changes every frame makes each step's shapes new to the kernels
        and the memory allocator.
        """
        active = times <= t
        empty = 0
        if bool(active.any()) and torch.device(device).type == "cpu":
            empty = max(memory_size - (t - int(times[active].min())), 0)
        return cls(cls._columns(times == t, device), cls._columns(active, device), cls._uniform(active), empty)


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


class TrackOn2(nn.Module):
    def __init__(self, config: ModelConfig | argparse.Namespace | Mapping[str, Any], nhead: int = 4,
                 vit_train_mode: bool | None = None):
        """``config``: a ModelConfig, or a full config namespace / mapping (its model fields are used).
        ``vit_train_mode`` lets the frozen ViT follow train() as in the reference (default: the namespace's
        ``frozen_vit_train_mode``, else False)."""
        super().__init__()
        if vit_train_mode is None:
            vit_train_mode = bool(getattr(config, "frozen_vit_train_mode", False))
        config = ModelConfig.coerce(config)
        self.K = config.K
        self.D = config.D
        self.M = config.M
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

    # ----------------------------------------------------------------------------------------------- memory size
    @torch.no_grad()
    def memory_extension(self, new_memory_size: int) -> None:
        """Inference-time memory extension: resample the past rows of t_embedding to ``new_memory_size`` rows."""
        if new_memory_size < 1:
            raise ValueError(f"memory size must be positive, got {new_memory_size}")
        past, now = self.t_embedding[:, :-1], self.t_embedding[:, -1:]
        resized = F.interpolate(past.transpose(1, 2), size=new_memory_size, mode="linear", align_corners=True)
        self.t_embedding = nn.Parameter(torch.cat([resized.transpose(1, 2), now], dim=1))
        self.M = new_memory_size

    # ------------------------------------------------------------------------------------------------- features
    def resize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H_in, W_in) in 0..255 -> (N, 3, H, W) in [0, 1] at the model input size."""
        return F.interpolate(frames / 255.0, size=self.input_size, mode="bilinear", align_corners=False)

    def encode(self, frames: torch.Tensor) -> FrameFeatures:
        """Encode (N, 3, H, W) frames in [0, 1] at the model input size."""
        pyramid = self.backbone(frames)
        shapes = self.level_shapes()
        maps = [tokens.transpose(1, 2).unflatten(2, shape) for tokens, shape in zip(pyramid, shapes)]
        # Token order once here, rather than a layout copy in each of the feature-attention layers' projections.
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

    def correlation_basis(self, pyramid: FeaturePyramid) -> torch.Tensor:
        """The multi-scale correlation of one frame as a linear basis (B, P, D).

        Correlation is a dot product with L2-normalised tokens, and the bilinear upsampling to stride 4 and the
        4->1 fusion conv are linear, so the fused map is <q_normalised, basis[:, p]> + bias with the basis (the
        weighted sum of the upsampled normalised token maps) computed once per frame for all queries. The maps stay
        in token order (channels last) throughout, so upsampling needs no layout copies.
        """
        weights = self.ms_corr_proj.weight.flatten()
        basis = None
        for level, (tokens, shape) in enumerate(zip(pyramid, self.level_shapes())):
            level_map = F.normalize(tokens, p=2, dim=-1)
            if shape != (self.Hf, self.Wf):
                channels_last = level_map.unflatten(1, shape).permute(0, 3, 1, 2)
                upsampled = F.interpolate(channels_last, size=(self.Hf, self.Wf), mode="bilinear", align_corners=False)
                level_map = upsampled.permute(0, 2, 3, 1).flatten(1, 2)
            if basis is None:
                basis = level_map * weights[level]
            else:  # basis + level_map * weight in one pass, in place on the basis this method created
                basis.addcmul_(level_map, weights[level])
        return basis

    def multiscale_correlation(self, q: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """Fused multi-scale cosine correlation of q (B, n, D) with a frame's ``correlation_basis`` -> (B, n, P)."""
        q_normalised = F.normalize(q, p=2, dim=-1).to(basis.dtype)
        bias = self.ms_corr_proj.bias.to(basis.dtype)
        if basis.shape[0] == 1 and onednn_applies(basis):  # oneDNN: about twice the batched matmul's speed here
            return rows_product(q_normalised[0], basis[0], bias.expand(basis.shape[1])).unsqueeze(0)
        return torch.baddbmm(bias, q_normalised, basis.transpose(1, 2))

    # --------------------------------------------------------------------------------------------- one frame step
    def init_state(self, batch: int, num_queries: int, like: torch.Tensor) -> TrackerState:
        """Empty state for ``num_queries`` queries, with the dtype and device of ``like``."""
        zeros = dict(dtype=like.dtype, device=like.device)
        return TrackerState(
            q_init=torch.zeros(batch, num_queries, self.D, **zeros),
            memory=torch.zeros(batch, num_queries, self.M, self.D, **zeros),
            memory_mask=torch.ones(batch, num_queries, self.M, dtype=torch.bool, device=like.device),
            started=torch.zeros(batch, num_queries, dtype=torch.bool, device=like.device),
        )

    def start_queries(self, state: TrackerState, features: FrameFeatures, coords: torch.Tensor,
                      starting: torch.Tensor, columns: Columns | None) -> None:
        """Initialise the queries flagged in ``starting`` (B, N), all within ``columns``, from this frame at
        normalised ``coords`` (B, N, 2)."""
        if columns is None:
            return
        sampled = self.sample_query_features(features.fused, coords[:, columns]).to(state.q_init.dtype)
        chosen = starting[:, columns].unsqueeze(-1)
        state.q_init[:, columns] = torch.where(chosen, sampled, state.q_init[:, columns])
        state.started = state.started | starting

    def decode(self, state: TrackerState, features: FrameFeatures, active: torch.Tensor, plan: StepPlan,
               p_mask: float = 0.0) -> tuple[Columns, StepOutput]:
        """Track the queries active in any batch element on this frame (``plan.decode`` must not be None).

        Returns the columns of the decoded queries (n of N) and their outputs. Queries inactive in one batch
        element but active in another are decoded too (their results are discarded by the caller) and are masked
        out of the query self-attention, so every active query sees exactly the active set, as in the reference.
        """
        columns = plan.decode
        sub_active = active[:, columns]
        batch, num = sub_active.shape
        dim = self.D
        skip = plan.empty_slots
        q = state.q_init[:, columns]
        memory_chunks = self._memory_chunks(state.memory[:, columns, skip:].reshape(batch * num, self.M - skip, dim))
        memory_mask = state.memory_mask[:, columns, skip:].reshape(batch * num, self.M - skip)
        query_mask = None if plan.all_active else ~sub_active
        current_slot = torch.zeros(batch * num, 1, dtype=torch.bool, device=q.device)
        t_embedding = self.t_embedding[:, skip:]

        for i in range(self.decoder_layer_num):
            q = self.feature_attention[i](q, features.fused, features.fused)
            q = self.query_attention[i](q, q, q, query_mask)
            noised = memory_mask
            if p_mask > 0:
                noised = memory_mask | (torch.rand(memory_mask.shape, device=q.device) < p_mask)
            last = i == self.decoder_layer_num - 1
            memory_chunks, q = self._memory_layer(i, memory_chunks, q.reshape(batch * num, dim), t_embedding,
                                                  torch.cat([noised, current_slot], dim=1), last)
            q = q.reshape(batch, num, dim)
        q = self.projection1(q)

        context = MultiScaleContext(feats=torch.cat(list(features.pyramid), dim=1), shapes=self.level_shapes(),
                                    size_wh=(self.W, self.H))
        basis = self.correlation_basis(features.pyramid)
        c1 = self.multiscale_correlation(q, basis)
        reranked = self.reranking_head(q, context, c1)
        q = self.projection2(reranked.q)
        c2 = self.multiscale_correlation(q, basis)
        p_patch = patch_centres(torch.argmax(c2.detach(), dim=-1), self.Wf, q.dtype)
        offsets, v_logit, u_logit = self.prediction_head(q, context, p_patch)
        step = StepOutput(c1, c2, offsets, v_logit, u_logit, p_patch, reranked.u_logit_top_k,
                          reranked.s_logit_top_k, reranked.p_patch_top_k, q)
        return columns, step

    @staticmethod
    def _memory_chunks(memory: torch.Tensor) -> list[torch.Tensor]:
        """The S sequences' memory rows (S, L - 1, D) in the chunks that memory attention processes one at a time:
        on the CPU about MEMORY_CHUNK_ROWS rows each, so that a chunk is assembled and processed while in cache;
        on other devices one chunk."""
        count, length = memory.shape[0], memory.shape[1] + 1
        rows = count if memory.device.type != "cpu" else MEMORY_CHUNK_ROWS // length
        return list(memory.split(max(1, rows)))

    def _memory_layer(self, layer: int, chunks: list[torch.Tensor], q: torch.Tensor, t_embedding: torch.Tensor,
                      key_mask: torch.Tensor, query_only: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Memory attention of layer ``layer`` over the S sequences, each its memory rows then the query (S, D).

        ``chunks`` hold the memory rows in consecutive groups of sequences, as ``_memory_chunks`` or a previous
        layer's outputs (whose last row, that layer's query, is replaced by ``q``). Returns this layer's outputs
        per chunk ((s, L, D), or (s, 1, D) with ``query_only``: the last layer's memory rows are discarded) and the
        updated query (S, D). Every row's result is the same as for all sequences at once.
        """
        block = self.memory_attention[layer]
        slots = key_mask.shape[1] - 1
        outputs, begin = [], 0
        for chunk in chunks:
            rows = slice(begin, begin + chunk.shape[0])
            outputs.append(self._memory_chunk(block, chunk[:, :slots], q[rows], t_embedding, key_mask[rows],
                                              query_only))
            begin = rows.stop
        new_q = outputs[0][:, -1] if len(outputs) == 1 else torch.cat([out[:, -1] for out in outputs])
        return outputs, new_q

    @staticmethod
    def _memory_chunk(block: MHABlock, memory: torch.Tensor, q: torch.Tensor, t_embedding: torch.Tensor,
                      key_mask: torch.Tensor, query_only: bool) -> torch.Tensor:
        """One memory-attention block over whole sequences (memory rows, then the query) -> (s, L or 1, D).

        The query's own slot (the last key) is never masked, so no row has all its keys masked."""
        part = torch.cat([memory, q.unsqueeze(1)], dim=1)
        keyed = part + t_embedding
        return block(keyed[:, -1:] if query_only else keyed, keyed, part, key_mask, may_mask_all_keys=False)

    @staticmethod
    def push_memory(state: TrackerState, columns: Columns, q: torch.Tensor, active: torch.Tensor) -> None:
        """Append this frame's decoded features of the active queries; other queries get an empty slot."""
        batch, num_queries = active.shape
        newest = state.memory.new_zeros(batch, num_queries, 1, state.memory.shape[-1])
        newest[:, columns, 0] = q.to(newest.dtype)
        newest = torch.where(active[..., None, None], newest, torch.zeros_like(newest))
        state.memory = slide_in(state.memory, newest)
        state.memory_mask = slide_in(state.memory_mask, ~active.unsqueeze(-1))

    # -------------------------------------------------------------------------------------------- full forwards
    def _prepare(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate inputs; return query times (B, N) and query coordinates normalised to [0, 1] (B, N, 2)."""
        check_video(video)
        batch, num_frames, _, height, width = video.shape
        check_queries(queries, batch, num_frames, height, width)
        times = queries[..., 0].long()
        scale = torch.tensor([width, height], dtype=queries.dtype, device=queries.device)
        return times, queries[..., 1:] / scale

    def to_input_pixels(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        scale = torch.tensor([width / self.W, height / self.H], dtype=points.dtype, device=points.device)
        return points * scale

    def forward(self, video: torch.Tensor, queries: torch.Tensor, p_mask: float = 0.1) -> dict[str, torch.Tensor]:
        """Training forward over a whole clip.

        video (B, T, 3, H_in, W_in) in 0..255; queries (B, N, 3) as (t, x, y) in input pixels. Returns the dict
        of SPEC 9 (P in input pixels; everything else in model-input pixels); entries of queries that have not
        started yet are zero.
        """
        times, coords = self._prepare(video, queries)
        batch, num_frames, _, height, width = video.shape
        num_queries = queries.shape[1]
        features = self.encode(self.resize_frames(video.flatten(0, 1)))
        per_frame = [t.unflatten(0, (batch, num_frames)) for t in [*features.pyramid, features.fused]]
        state = self.init_state(batch, num_queries, per_frame[-1])
        dtype = video.dtype

        outputs: dict[str, list[torch.Tensor]] = {key: [] for key in _TRAINING_KEYS}
        for t in range(num_frames):
            frame = FrameFeatures(FeaturePyramid(*(level[:, t] for level in per_frame[:4])), per_frame[4][:, t])
            active = times <= t
            plan = StepPlan.from_masks(times == t, active)
            self.start_queries(state, frame, coords, times == t, plan.start)
            if plan.decode is None:
                for key, empty in self._empty_outputs(batch, num_queries, dtype, video.device).items():
                    outputs[key].append(empty)
                continue
            columns, step = self.decode(state, frame, active, plan, p_mask=p_mask)
            for key, value in _scatter_step(step, columns, active, dtype).items():
                outputs[key].append(value)
            self.push_memory(state, columns, step.q, active)

        out = {key: torch.stack(values, dim=1) for key, values in outputs.items()}
        out["P"] = self.to_input_pixels(out["P_patch"] + out["O"][:, :, -1], height, width)
        return {key: out[key] for key in ("P", *_TRAINING_KEYS)}

    def _empty_outputs(self, batch: int, num: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        layers = self.prediction_head.layer_num
        shapes = {
            "C1": (batch, num, self.P), "C2": (batch, num, self.P), "O": (batch, layers, num, 2),
            "V_logit": (batch, num), "U_logit": (batch, num), "P_patch": (batch, num, 2),
            "U_logit_top_k": (batch, num, self.K), "S_logit_top_k": (batch, num, self.K),
            "P_patch_top_k": (batch, num, self.K, 2),
        }
        return {key: torch.zeros(shape, dtype=dtype, device=device) for key, shape in shapes.items()}

    @torch.no_grad()
    def forward_online(self, video: torch.Tensor, queries: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frame-by-frame inference (each frame encoded on arrival): P (input pixels), V_logit, U_logit."""
        from model.online import OnlineTracker  # the driver builds on this module's state and step

        times, coords = self._prepare(video, queries)
        batch, num_frames, _, height, width = video.shape
        tracker = OnlineTracker(self, batch, coords)
        tracker.add_queries(coords, times)
        steps = [tracker.step(video[:, t]) for t in range(num_frames)]
        points = torch.stack([step.points.to(video.dtype) for step in steps], dim=1)
        return {"P": self.to_input_pixels(points, height, width),
                "V_logit": torch.stack([step.v_logit.to(video.dtype) for step in steps], dim=1),
                "U_logit": torch.stack([step.u_logit.to(video.dtype) for step in steps], dim=1)}

    def step(self, state: TrackerState, frame: FrameFeatures, coords: torch.Tensor, starting: torch.Tensor,
             active: torch.Tensor, plan: StepPlan | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One online step: start new queries, track the active ones, update memory.

        ``plan`` (see ``StepPlan.from_times``) lets the step run without reading the masks back from the device;
        without it the plan is read from ``starting`` and ``active``. Returns points (B, N, 2) in model-input
        pixels, v_logit and u_logit (B, N); zero where not active.
        """
        if plan is None:
            plan = StepPlan.from_masks(starting, active)
        batch, num = active.shape
        self.start_queries(state, frame, coords, starting, plan.start)
        if plan.decode is None:
            zeros = frame.fused.new_zeros(batch, num)
            return frame.fused.new_zeros(batch, num, 2), zeros, zeros.clone()
        columns, step = self.decode(state, frame, active, plan)
        self.push_memory(state, columns, step.q, active)
        if plan.all_active and isinstance(columns, slice):
            dtype = frame.fused.dtype
            return step.points.to(dtype), step.v_logit.to(dtype), step.u_logit.to(dtype)
        points = frame.fused.new_zeros(batch, num, 2)
        v_logit = frame.fused.new_zeros(batch, num)
        u_logit = frame.fused.new_zeros(batch, num)
        keep = active[:, columns]
        points[:, columns] = torch.where(keep[..., None], step.points.to(points.dtype), 0.0)
        v_logit[:, columns] = torch.where(keep, step.v_logit.to(v_logit.dtype), 0.0)
        u_logit[:, columns] = torch.where(keep, step.u_logit.to(u_logit.dtype), 0.0)
        return points, v_logit, u_logit


_TRAINING_KEYS = ("C1", "C2", "O", "V_logit", "U_logit", "P_patch", "U_logit_top_k", "S_logit_top_k",
                  "P_patch_top_k")


def _scatter_step(step: StepOutput, columns: Columns, active: torch.Tensor,
                  dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Place the decoded queries' outputs at their columns among all N queries; inactive entries are zero."""
    batch, num = active.shape
    keep = active[:, columns]

    def place(value: torch.Tensor, query_dim: int) -> torch.Tensor:
        shape = list(value.shape)
        shape[query_dim] = num
        full = value.new_zeros(shape, dtype=dtype)
        index = [slice(None)] * len(shape)
        index[query_dim] = columns
        mask_shape = [batch] + [1] * (len(shape) - 1)
        mask_shape[query_dim] = value.shape[query_dim]
        full[tuple(index)] = torch.where(keep.view(mask_shape), value.to(dtype), 0.0)
        return full

    return {
        "C1": place(step.c1, 1), "C2": place(step.c2, 1), "O": place(step.offsets, 2),
        "V_logit": place(step.v_logit, 1), "U_logit": place(step.u_logit, 1), "P_patch": place(step.p_patch, 1),
        "U_logit_top_k": place(step.u_logit_top_k, 1), "S_logit_top_k": place(step.s_logit_top_k, 1),
        "P_patch_top_k": place(step.p_patch_top_k, 1),
    }
