"""The user-facing tracker: whole videos (``predictor(video, queries)``) or live streams (``forward_frame``).

Example::

    from trackon2.runtime.predictor import Predictor   # also importable as model.trackon_predictor

    predictor = Predictor.from_pretrained("trackon2-dinov3", device="cuda")   # or "trackon2-dinov2", "track-on-r"
    # a config file and a checkpoint file:
    # Predictor(ModelConfig.from_yaml("config/test.yaml"), checkpoint_path="trackon2_dinov3_checkpoint.pt")
    trajectory, visibility = predictor(video, queries)   # video (1, T, 3, H, W) in 0..255, queries (1, N, 3)

    predictor.reset()                                    # streaming: one frame at a time
    points, visible = predictor.forward_frame(frame, new_queries=torch.tensor([[120.0, 64.0]]))
    ids = predictor.add_queries(torch.tensor([[30.0, 40.0]]))   # start on the next frame; stable ids
    tracks = predictor.track_frame(next_frame)           # tracks.ids, .points, .visible, .confidence
    predictor.remove_queries(ids)                        # frees their memory
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from trackon2.model.checkpoint import (
    VIT_PREFIXES,
    download_released_checkpoint,
    load_state_dict_strict,
    read_checkpoint,
)
from trackon2.model.config import ModelConfig
from trackon2.model.inputs import InputError, check_pixel_values, check_queries, check_video
from trackon2.model.registry import get_variant
from trackon2.model.trackon import FrameFeatures, TrackOn2
from trackon2.model.vit import BackboneUnavailableError
from trackon2.model.yaml_schema import config_from_mapping
from trackon2.runtime.fast import set_fast
from trackon2.runtime.memory_size import inference_memory_size
from trackon2.runtime.online import MemoryFiller, OnlineTracker
from trackon2.runtime.query_frame import pin_stream_frame, pin_whole_video
from trackon2.runtime.two_way import track_two_way

UNIFORM_GRID_SIZE = 32  # the query grid tracked when a video comes without queries
SUPPORT_GRID_SIZE = 20  # the reference's support grid, also its evaluation's


def get_points_on_a_grid(size: int, extent: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """A size x size grid of (x, y) points over an (H, W) frame, leaving a margin of W/64: (1, size^2, 2).

    Built in float32, as the reference does, so the support queries are bit-identical.
    """
    height, width = extent
    if size == 1:
        return torch.tensor([[[width / 2, height / 2]]], device=device)
    margin = width / 64
    ys = torch.linspace(margin, height - margin, size, device=device)
    xs = torch.linspace(margin, width - margin, size, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(1, -1, 2)


@dataclass
class FrameTracks:
    """One streamed frame's results for the user queries started so far, in the order of ``ids``."""

    ids: list[int]  # stable query ids, as returned by ``Predictor.add_queries``
    points: torch.Tensor  # (N, 2) x, y in frame pixels
    visible: torch.Tensor  # (N,) bool
    confidence: torch.Tensor  # (N,) in [0, 1]: 1 - P(point is off by > 12 px or occluded), from the uncertainty head


# Encoded frames a two-way pass keeps from its forward pass for the backward one (bytes); beyond it, frames are
# encoded again. At 384x512 a frame's pyramid and fused map take about 29 MB (its correlation basis 13 MB more).
ENCODED_FRAMES_BUDGET = 4 * 2**30


class _EncodedFrames:
    """Frames 0..last of one video encoded going forward, for the backward pass, within a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.frames: dict[int, FrameFeatures] = {}
        self.size = 0

    def keeper(self, last: int) -> Callable[[int, FrameFeatures], None]:
        def keep(t: int, features: FrameFeatures) -> None:
            nbytes = sum(tensor.nbytes for tensor in (*features.pyramid, features.fused))
            if t <= last and self.size + nbytes <= self.budget:
                self.frames[t] = features
                self.size += nbytes

        return keep

    def get(self, t: int) -> FrameFeatures | None:
        return self.frames.get(t)


class Predictor(nn.Module):
    """Track-On2 with a loaded checkpoint, an inference memory of M_i slots and support queries; its model's
    parameters are frozen (``requires_grad`` False) and, unless ``fast`` is False, it runs the fast forms of the
    model's functions (``runtime.fast``). The model itself is never resized or rewritten: its ``state_dict`` is
    the checkpoint's, and several predictors may share one model."""

    def __init__(
        self,
        config: ModelConfig | argparse.Namespace | Mapping[str, Any],
        checkpoint_path: str | Path | None = None,
        support_grid_size: int = SUPPORT_GRID_SIZE,
        allow_outside_queries: bool = False,
        model: TrackOn2 | None = None,
        fast: bool = True,
        backward_tracking: bool = False,
        pin_query_points: bool = True,
    ):
        """``config``: a ModelConfig, or the keys of a YAML config (namespace or mapping, validated here; its model
        fields are used). Without ``checkpoint_path`` the tracker keeps its random initialisation; ``model``: an
        existing tracker to use instead of building one (its weights are shared).

        ``backward_tracking``: whole videos are also tracked backward from each query's frame to frame 0
        (``runtime.two_way``); streams stay forward-only. ``pin_query_points``: on its query frame a track is the
        query point itself, visible; False keeps the model's estimate there, as the reference
        (``runtime.query_frame``)."""
        super().__init__()
        if support_grid_size < 0:
            raise ValueError(f"support_grid_size must be >= 0, got {support_grid_size}")
        if not isinstance(config, ModelConfig):
            config = ModelConfig.from_namespace(config_from_mapping(config))
        self.config = config
        self.model = TrackOn2(config) if model is None else model
        if checkpoint_path is not None:
            load_state_dict_strict(self.model, read_checkpoint(checkpoint_path), source=str(checkpoint_path))
        self.model.eval().requires_grad_(False)
        set_fast(self.model, fast)
        self.memory_size = inference_memory_size(config.M_i)
        self.delta_v = float(config.delta_v)
        self.support_grid_size = support_grid_size
        self.allow_outside_queries = allow_outside_queries
        self.backward_tracking = backward_tracking
        self.pin_query_points = pin_query_points
        self.memory_filler: MemoryFiller | None = None
        self.reset()

    @classmethod
    def from_pretrained(
        cls,
        variant: str,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        M_i: int | None = None,
        delta_v: float | None = None,
        support_grid_size: int = 20,
        allow_outside_queries: bool = False,
        backward_tracking: bool = False,
        pin_query_points: bool = True,
        config_overrides: Mapping[str, Any] | None = None,
    ) -> "Predictor":
        """A released tracker by its registry name (``trackon2-dinov2``, ``trackon2-dinov3``, ``track-on-r``).

        The checkpoint and the ViT come from the Hugging Face cache, downloaded on first use; with
        ``HF_HUB_OFFLINE=1`` only the cache is read. ``M_i`` and ``delta_v`` replace the variant's inference
        defaults (72 and 0.8); ``config_overrides`` replaces other model fields (for small test models: the
        checkpoint must then match them).
        """
        entry = get_variant(variant)
        settings = {key: value for key, value in (("M_i", M_i), ("delta_v", delta_v)) if value is not None}
        config = entry.config.replace(**{**dict(config_overrides or {}), **settings})
        checkpoint = download_released_checkpoint(entry.name)
        try:
            predictor = cls(config, checkpoint_path=checkpoint, support_grid_size=support_grid_size,
                            allow_outside_queries=allow_outside_queries, backward_tracking=backward_tracking,
                            pin_query_points=pin_query_points)
        except BackboneUnavailableError as err:
            raise BackboneUnavailableError(f"{entry.name}: {err}") from err
        return predictor.to(device=device, dtype=dtype)

    @property
    def device(self) -> torch.device:
        """The device the model's weights are on (inputs on other devices are moved there)."""
        return self._param.device

    def save(self, path: str | Path) -> Path:
        """Write the tracker's weights to ``path`` as ``{"state_dict": ...}``, which ``Predictor(config,
        checkpoint_path=path)`` loads (the model's own state dict: the Predictor never changes it). The frozen ViT is
        left out when it comes from the hub (as in the released files) and kept when the config builds it randomly
        (``backbone_config``)."""
        keep_vit = self.config.backbone_config is not None
        state = {name: value.detach().cpu() for name, value in self.model.state_dict().items()
                 if keep_vit or not name.startswith(VIT_PREFIXES)}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": state}, path)
        return path

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def _as_model_input(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move to the model's device and dtype (integer frames such as uint8 become floats)."""
        return tensor.to(device=self._param.device, dtype=self._param.dtype)

    def _support_queries(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """The support grid as (1, S^2, 3) queries at frame 0."""
        if self.support_grid_size == 0:
            return torch.zeros(1, 0, 3, device=device)
        grid = get_points_on_a_grid(self.support_grid_size, (height, width), device)
        return torch.cat([torch.zeros_like(grid[..., :1]), grid], dim=-1)

    def _tracker_for(self, batch: int, coords_like: torch.Tensor) -> OnlineTracker:
        return OnlineTracker(self.model, batch, coords_like, self.memory_size, self.memory_filler)

    def _visibility(self, v_logit: torch.Tensor, started: torch.Tensor) -> torch.Tensor:
        return (v_logit.sigmoid() >= self.delta_v) & started

    # ---------------------------------------------------------------------------------------------- whole video
    @torch.no_grad()
    def forward(
        self, video: torch.Tensor, queries: torch.Tensor | None = None, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Track ``queries`` through ``video``, one frame at a time (no frame sees the future).

        video: (B, T, 3, H, W) in 0..255 (float or uint8), B independent videos tracked together; queries:
        (B, N, 3) as (t, x, y) in video pixels, or None for a 32x32 grid on the first frame. Returns trajectory
        (B, T, N, 2) in video pixels and visibility (B, T, N) bool; before a query's start frame its point is
        (0, 0) and it is not visible, unless ``backward_tracking`` tracks it back to frame 0. Each video's result
        is the same as when it is tracked alone.
        """
        if not self.backward_tracking:
            return self._track_forward(video, queries, progress)
        encoded = _EncodedFrames(ENCODED_FRAMES_BUDGET if video.shape[0] == 1 else 0)

        def track(clip: torch.Tensor, points: torch.Tensor | None,
                  origin: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
            if origin is None:  # forward: keep the encoded frames a backward pass will step over again
                last = 0 if points is None else int(points[..., 0].max())
                return self._track_forward(clip, points, progress, keep=encoded.keeper(last))
            _, last = origin
            return self._track_forward(clip, points, progress, reuse=lambda r: encoded.get(last - r))

        return track_two_way(track, video, queries)

    def _track_forward(self, video: torch.Tensor, queries: torch.Tensor | None, progress: bool,
                       keep: Callable[[int, FrameFeatures], None] | None = None,
                       reuse: Callable[[int], FrameFeatures | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` without backward tracking. ``keep(t, features)`` receives each encoded frame;
        ``reuse(t)`` may give frame t already encoded."""
        if isinstance(video, torch.Tensor) and not video.is_floating_point() and video.dim() == 5:
            video = video.float()
        check_video(video)
        batch, num_frames, _, height, width = video.shape
        video = self._as_model_input(video)
        if queries is None:
            grid = get_points_on_a_grid(UNIFORM_GRID_SIZE, (height, width), video.device)
            queries = torch.cat([torch.zeros_like(grid[..., :1]), grid], dim=-1).expand(batch, -1, -1)
        check_queries(queries, batch, num_frames, height, width, allow_outside=self.allow_outside_queries)
        num_user = queries.shape[1]
        support = self._support_queries(height, width, video.device).to(video.dtype).expand(batch, -1, -1)
        queries = torch.cat([queries.to(video.device, video.dtype), support], dim=1)
        coords = queries[..., 1:] / torch.tensor([width, height], dtype=queries.dtype, device=queries.device)
        tracker = self._tracker_for(batch, coords)
        tracker.add_queries(coords, queries[..., 0].long())  # the one read-back: start frames go to the host

        points, visibility = [], []
        for t in tqdm(range(num_frames), desc="tracking", unit="frame", disable=not progress):
            features = None if reuse is None else reuse(t)
            if features is None:
                features = self.model.encode(self.model.resize_frames(video[:, t]))
                if keep is not None:
                    keep(t, features)
            step = tracker.step(video[:, t], features)
            points.append(step.points[:, :num_user])
            visibility.append(self._visibility(step.v_logit[:, :num_user], step.started[:, :num_user]))
        trajectory = self.model.to_input_pixels(torch.stack(points, dim=1), height, width).to(video.dtype)
        visibility = torch.stack(visibility, dim=1)
        if self.pin_query_points:
            pin_whole_video(trajectory, visibility, queries[:, :num_user])
        return trajectory, visibility

    # ------------------------------------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Forget the stream: the next ``forward_frame`` starts a new video (query ids start again at 0)."""
        self._tracker: OnlineTracker | None = None
        self._frame_size: tuple[int, int] | None = None
        self._num_support = 0
        self._ids: list[int] = []
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._next_id = 0
        self._warned_range = False

    @property
    def frame_index(self) -> int:
        """How many frames of the stream have been tracked."""
        return 0 if self._tracker is None else self._tracker.frame_index

    @property
    def query_ids(self) -> list[int]:
        """Ids of the user queries in the order of ``forward_frame``'s outputs (started ones, then pending)."""
        return self._ids + [query_id for query_id, _ in self._pending]

    def add_queries(self, points: torch.Tensor) -> list[int]:
        """Queue (n, 2) points (x, y), in pixels of the stream's frames, to start on the next frame given.

        Returns one stable id per point; the ids stay valid (and keep naming the same points) while other queries
        are added or removed, until ``reset``.
        """
        points = self._as_query_points(points)
        if self._frame_size is not None:
            self._check_inside(points)
        ids = list(range(self._next_id, self._next_id + points.shape[1]))
        self._next_id += len(ids)
        self._pending.extend(zip(ids, points[0]))
        return ids

    def remove_queries(self, ids: list[int]) -> None:
        """Stop tracking the queries with these ids and free their memory.

        From the next frame on, the other queries are computed exactly as if the removed ones had never been
        there; what they took from them on earlier frames (query self-attention mixes the queries of a frame)
        stays in their memory.
        """
        unknown = sorted(set(ids) - set(self.query_ids))
        if unknown:
            raise InputError(f"no query with id(s) {unknown}; current ids: {self.query_ids}")
        removed = set(ids)
        self._pending = [(query_id, xy) for query_id, xy in self._pending if query_id not in removed]
        keep_user = [i for i, query_id in enumerate(self._ids) if query_id not in removed]
        if len(keep_user) == len(self._ids):
            return
        keep = torch.tensor(list(range(self._num_support)) + [self._num_support + i for i in keep_user],
                            dtype=torch.long)
        self._tracker.keep_queries(keep)
        self._ids = [self._ids[i] for i in keep_user]

    @torch.no_grad()
    def forward_frame(
        self, frame: torch.Tensor | np.ndarray, new_queries: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Track one new frame of a stream.

        frame: (3, H, W) or (1, 3, H, W) in 0..255, or a numpy (H, W, 3) uint8 RGB image as imageio gives (OpenCV
        gives BGR: pass ``frame[..., ::-1]``); new_queries: (n, 2) or (1, n, 2) as (x, y) on this frame,
        appended after the queries started earlier. Returns points (N, 2) in frame pixels and visibility (N,)
        for all user queries started so far, in the order they were given (``query_ids`` names them).
        """
        tracks = self.track_frame(frame, new_queries)
        return tracks.points, tracks.visible

    @torch.no_grad()
    def track_frame(self, frame: torch.Tensor | np.ndarray, new_queries: torch.Tensor | None = None) -> FrameTracks:
        """``forward_frame`` that also returns the query ids and per-point confidence (see ``FrameTracks``)."""
        frame = self._check_frame(frame)
        if self._warned_range:  # warn about a 0..1 stream once, but check every frame for NaN / inf
            if not bool(torch.isfinite(frame).all()):
                raise InputError("frame contains NaN or infinite pixel values")
        else:
            self._warned_range = check_pixel_values(frame, "frame")
        height, width = self._frame_size
        self._check_pending()
        if new_queries is not None:
            self.add_queries(new_queries)
        frame = self._as_model_input(frame)
        if self._tracker is None:
            self._tracker = self._tracker_for(1, frame.new_zeros(1, 0, 2))
            support = self._support_queries(height, width, frame.device)[..., 1:]
            self._num_support = support.shape[1]
            self._add_queries(support.to(frame.dtype), width, height)
            if self.backward_tracking:
                warnings.warn("backward_tracking applies to whole videos only: streams are tracked forward only",
                              stacklevel=3)
        starting = self._start_pending(frame.dtype, width, height)
        step = self._tracker.step(frame)
        points = self.model.to_input_pixels(step.points[0, self._num_support:], height, width)
        user = slice(self._num_support, None)
        points = points.to(frame.dtype)
        visible = self._visibility(step.v_logit[0, user], step.started[0, user])
        confidence = torch.sigmoid(-step.u_logit[0, user]).to(frame.dtype)
        if self.pin_query_points:
            points, visible, confidence = pin_stream_frame(points, visible, confidence, starting)
        return FrameTracks(ids=list(self._ids), points=points, visible=visible, confidence=confidence)

    def _start_pending(self, dtype: torch.dtype, width: int, height: int) -> torch.Tensor:
        """Move the queued queries into the tracker state; they start on the frame being processed.

        Returns their (n, 2) points (x, y pixels), n = 0 when none was queued."""
        if not self._pending:
            return torch.zeros(0, 2, dtype=dtype)
        points = torch.stack([xy for _, xy in self._pending]).unsqueeze(0)
        self._add_queries(points.to(dtype), width, height)
        self._ids.extend(query_id for query_id, _ in self._pending)
        self._pending = []
        return points[0]

    def _check_pending(self) -> None:
        """Queries queued before the first frame must lie in it; if not they are dropped and the error raised."""
        if not self._pending:
            return
        try:
            self._check_inside(torch.stack([xy for _, xy in self._pending]).unsqueeze(0))
        except InputError:
            self._pending = []
            raise

    def _check_frame(self, frame: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise InputError(f"a numpy frame must be an (H, W, 3) RGB image, got shape {frame.shape}")
            frame = torch.from_numpy(np.require(frame, requirements=("C", "W"))).permute(2, 0, 1)  # copies if needed
        if not isinstance(frame, torch.Tensor):
            raise InputError(f"frame must be a torch.Tensor or a numpy (H, W, 3) image, got {type(frame).__name__}")
        if frame.dim() == 3:
            frame = frame.unsqueeze(0)
        if frame.dim() != 4 or frame.shape[:2] != (1, 3):
            raise InputError(f"frame must have shape (3, H, W) or (1, 3, H, W), got {tuple(frame.shape)}")
        size = (int(frame.shape[-2]), int(frame.shape[-1]))
        if self._frame_size is not None and size != self._frame_size:
            raise InputError(f"frame size changed within a stream: {size} vs {self._frame_size}; call reset() first")
        self._frame_size = size
        return frame

    def _as_query_points(self, points: torch.Tensor) -> torch.Tensor:
        """(n, 2) or (1, n, 2) points (x, y) -> (1, n, 2) on the model's device."""
        if not isinstance(points, torch.Tensor):
            points = torch.as_tensor(points, dtype=torch.float32)
        if points.dim() == 2:
            points = points.unsqueeze(0)
        if points.dim() != 3 or points.shape[0] != 1 or points.shape[-1] != 2:
            raise InputError(f"new_queries must have shape (n, 2) or (1, n, 2) as (x, y), got {tuple(points.shape)}")
        if points.shape[1] == 0:
            raise InputError("new_queries is empty: give at least one (x, y) point, or None when no query starts "
                             "on this frame")
        return points.to(self._param.device)

    def _check_inside(self, points: torch.Tensor) -> None:
        """(1, n, 2) points must lie in the stream's frame (unless outside queries are allowed)."""
        height, width = self._frame_size
        with_time = torch.cat([torch.zeros_like(points[..., :1]), points], dim=-1)
        check_queries(with_time.float(), 1, None, height, width, allow_outside=self.allow_outside_queries)

    def _add_queries(self, points: torch.Tensor, width: int, height: int) -> None:
        """Queue (1, n, 2) queries (x, y pixels) in the stream's tracker; they start on the next frame stepped."""
        scale = torch.tensor([width, height], dtype=points.dtype, device=points.device)
        self._tracker.add_queries(points / scale, self._tracker.frame_index)
