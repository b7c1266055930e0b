"""The per-frame driver shared by every online use of Track-On2: whole videos (``Predictor.forward``,
evaluation) and live streams (``Predictor.track_frame``).

An ``OnlineTracker`` holds the queries (normalised coordinates and start frames) and the tracker state; each
``step`` encodes one frame, starts the queries whose start frame it is, tracks every started query and writes its
memory, with the model's own functions (``TrackOn2.start_queries`` / ``decode`` / ``write_memory``) in the order
of ``TrackOn2``'s plain loop. Queries may be added (to start at a given frame) or dropped between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trackon2.model.trackon import FrameFeatures, TrackOn2, scatter_columns
from trackon2.runtime.fast import is_fast, memory_class
from trackon2.runtime.plan import StepPlan
from trackon2.runtime.state import TrackerState

# Makes the memory of newly created queries, (B, n, M_i, D) -> features, to start them with a full memory.
MemoryFiller = Callable[[tuple[int, ...], torch.Tensor], torch.Tensor]


@dataclass
class FrameStep:
    """One frame's outputs for all N queries; zero for queries not started yet."""

    points: torch.Tensor  # (B, N, 2) x, y in model-input pixels
    v_logit: torch.Tensor  # (B, N) visibility logit
    u_logit: torch.Tensor  # (B, N) uncertainty logit
    started: torch.Tensor  # (B, N) bool: the query's start frame is this frame or an earlier one


class OnlineTracker:
    """Tracks a batch of B videos one frame at a time (no frame sees the future), with ``memory_size`` (M_i)
    memory slots per query.

    ``frame_index`` counts the frames stepped so far; a query added with start frame s is initialised from frame s
    and tracked from then on. Start frames are kept on the host, so each step's plan is decided without reading
    values back from the device. ``memory_filler`` (for steady-state timing) fills every new query's memory.
    """

    def __init__(self, model: TrackOn2, batch: int, coords_like: torch.Tensor, memory_size: int,
                 memory_filler: MemoryFiller | None = None) -> None:
        self.model = model
        self.batch = batch
        self.memory_size = memory_size
        self.memory_filler = memory_filler
        self.coords = coords_like.new_zeros(batch, 0, 2)  # (B, N, 2) normalised (x, y) in [0, 1]
        self.times = torch.zeros(batch, 0, dtype=torch.long)  # (B, N) start frames, on the host
        self._device_times = self.times.to(coords_like.device)  # the same on the model's device
        self.state: TrackerState | None = None
        self.frame_index = 0

    @property
    def num_queries(self) -> int:
        return self.coords.shape[1]

    def add_queries(self, coords: torch.Tensor, times: torch.Tensor | int) -> None:
        """Append queries: ``coords`` (B, n, 2) normalised (x, y), ``times`` (B, n) start frames or one frame for
        all (none may be earlier than the next frame to step)."""
        count = coords.shape[1]
        if isinstance(times, int):
            times = torch.full((self.batch, count), times, dtype=torch.long)
        self.coords = torch.cat([self.coords, coords.to(self.coords)], dim=1)
        self.times = torch.cat([self.times, times.to("cpu", torch.long)], dim=1)
        self._device_times = self.times.to(self.coords.device)
        if self.state is not None and count:
            self.state.extend(self._new_state(count, self.state.q_init))

    def keep_queries(self, columns: torch.Tensor) -> None:
        """Keep only the queries at ``columns`` (a long index over N), in that order; the others are forgotten."""
        self.coords = self.coords[:, columns.to(self.coords.device)]
        self.times = self.times[:, columns.cpu()]
        self._device_times = self.times.to(self.coords.device)
        if self.state is not None:
            self.state.select(columns.to(self.state.q_init.device))

    def _new_state(self, count: int, like: torch.Tensor) -> TrackerState:
        state = TrackerState.empty(self.batch, count, self.model.D, self.memory_size, like,
                                   memory_class(self.model))
        if self.memory_filler is not None:
            state.fill_memory(self.memory_filler(tuple(state.memory.features.shape), like))
        return state

    def plan(self, t: int, device: torch.device) -> StepPlan:
        """The plan of frame ``t``; a fast model on the CPU leaves out the memory slots empty for every query
        (none when the memory starts full)."""
        skip = is_fast(self.model) and device.type == "cpu" and self.memory_filler is None
        return StepPlan.from_times(self.times, t, self.memory_size, device, skip_empty_slots=skip)

    @torch.no_grad()
    def step(self, frame: torch.Tensor, features: FrameFeatures | None = None) -> FrameStep:
        """Track frame ``frame_index``: (B, 3, H, W) in 0..255 at the size the query coordinates refer to.
        ``features``: the frame already encoded (``model.encode``), so that it is not encoded again."""
        model = self.model
        if features is None:
            features = model.encode(model.resize_frames(frame))
        if self.state is None:
            self.state = self._new_state(self.num_queries, features.fused)
        t = self.frame_index
        starting, active = self._device_times == t, self._device_times <= t
        plan = self.plan(t, frame.device)
        points, v_logit, u_logit = self._track(features, starting, active, plan)
        self.frame_index += 1
        return FrameStep(points, v_logit, u_logit, active)

    def _track(self, features: FrameFeatures, starting: torch.Tensor, active: torch.Tensor,
               plan: StepPlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start, decode and write memory as planned; points (B, N, 2), v_logit and u_logit (B, N), zero where
        not active."""
        model, state = self.model, self.state
        batch, num = active.shape
        state.q_init = model.start_queries(state.q_init, features, self.coords, starting, plan.start)
        state.started = state.started | starting
        dtype = features.fused.dtype
        if plan.decode is None:
            zeros = features.fused.new_zeros(batch, num)
            return features.fused.new_zeros(batch, num, 2), zeros, zeros.clone()
        columns = plan.decode
        query_mask = None if plan.all_active else ~active[:, columns]
        memory = state.memory.recent(plan.empty_slots).columns(columns)
        step = model.decode(state.q_init[:, columns], features, memory, query_mask)
        model.write_memory(state.memory, columns, step.q, active)
        if plan.all_active and isinstance(columns, slice):
            return step.points.to(dtype), step.v_logit.to(dtype), step.u_logit.to(dtype)
        keep = active[:, columns]
        return tuple(scatter_columns(value, columns, keep, num, 1, dtype)
                     for value in (step.points, step.v_logit, step.u_logit))
