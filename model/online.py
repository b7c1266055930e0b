"""The per-frame driver shared by every online use of Track-On2: whole videos (``Predictor.forward``,
``TrackOn2.forward_online``, evaluation) and live streams (``Predictor.track_frame``).

An ``OnlineTracker`` holds the queries (normalised coordinates and start frames) and the tracker state; each
``step`` encodes one frame, starts the queries whose start frame it is, tracks every started query and updates its
memory. Queries may be added (to start at a given frame) or dropped between steps; the state grows and shrinks
through ``TrackerState.extend`` / ``TrackerState.select`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from model.trackon import StepPlan, TrackerState

if TYPE_CHECKING:
    from model.trackon import TrackOn2


@dataclass
class FrameStep:
    """One frame's outputs for all N queries; zero for queries not started yet."""

    points: torch.Tensor  # (B, N, 2) x, y in model-input pixels
    v_logit: torch.Tensor  # (B, N) visibility logit
    u_logit: torch.Tensor  # (B, N) uncertainty logit
    started: torch.Tensor  # (B, N) bool: the query's start frame is this frame or an earlier one


class OnlineTracker:
    """Tracks a batch of B videos one frame at a time (no frame sees the future).

    ``frame_index`` counts the frames stepped so far; a query added with start frame s is initialised from frame s
    and tracked from then on. Start frames are kept on the host, so each step's plan is decided without reading
    values back from the device.
    """

    def __init__(self, model: "TrackOn2", batch: int, coords_like: torch.Tensor) -> None:
        self.model = model
        self.batch = batch
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
            self.state.extend(self.model.init_state(self.batch, count, self.state.q_init))

    def keep_queries(self, columns: torch.Tensor) -> None:
        """Keep only the queries at ``columns`` (a long index over N), in that order; the others are forgotten."""
        self.coords = self.coords[:, columns.to(self.coords.device)]
        self.times = self.times[:, columns.cpu()]
        self._device_times = self.times.to(self.coords.device)
        if self.state is not None:
            self.state.select(columns.to(self.state.q_init.device))

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> FrameStep:
        """Track frame ``frame_index``: (B, 3, H, W) in 0..255 at the size the query coordinates refer to."""
        model = self.model
        features = model.encode(model.resize_frames(frame))
        if self.state is None:
            self.state = model.init_state(self.batch, self.num_queries, features.fused)
        t = self.frame_index
        times = self._device_times
        plan = StepPlan.from_times(self.times, t, model.M, frame.device)
        points, v_logit, u_logit = model.step(self.state, features, self.coords, times == t, times <= t, plan)
        self.frame_index += 1
        return FrameStep(points, v_logit, u_logit, times <= t)
