"""The online frame step of Track-On2 as one torch module with the whole tracker state as explicit tensors.

``OnlineStep`` is what ``export.onnx`` traces, its inputs and outputs in the order of ``export.layout``: it
encodes a frame, starts the queries flagged in ``starting`` (their start features sampled from this frame, their
memories emptied), tracks every query slot flagged in ``active`` and writes their memories, with the model's own
functions (``TrackOn2.encode`` / ``decode`` / ``sample_query_features`` / ``write_memory``). Slots that are not
active are hidden from the others' self-attention and their outputs are zero, so the active queries are tracked
as if the others were not there (float summation order aside).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from trackon2.model.memory import QueryMemory
from trackon2.model.trackon import TrackOn2


class ExportedTrackOn2(TrackOn2):
    """``TrackOn2`` whose last memory-attention layer computes the query rows only, as ``runtime.fast`` does:
    the memory rows' outputs of that layer are never used, and ``MHABlock`` gives every row the same result
    whether or not the other rows are passed, so the step's results are the model's."""

    def attend_memory(self, layer: int, rows: torch.Tensor, q: torch.Tensor, t_embedding: torch.Tensor,
                      key_mask: torch.Tensor, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if not last:
            return super().attend_memory(layer, rows, q, t_embedding, key_mask, last)
        sequence = torch.cat([rows, q.unsqueeze(1)], dim=1)
        keyed = sequence + t_embedding
        return rows, self.memory_attention[layer](keyed[:, -1:], keyed, sequence, key_mask)[:, -1]


class OnlineStep(nn.Module):
    """One frame step of a plain (not ``runtime.fast``) TrackOn2 with explicit state, for one video.

    frame (1, 3, h, w) float 0..255 at any size (resized as ``TrackOn2.resize_frames``); coords (1, N, 2)
    normalised (x, y) of each slot's query; starting, active (1, N) bool; q_init (1, N, D); memory (1, N, M_i, D);
    memory_empty (1, N, M_i) bool; frame_index (1,) int64. Returns points (1, N, 2) in model-input pixels,
    visibility = sigmoid(v_logit) and confidence = sigmoid(-u_logit) (1, N), and the new state.
    """

    def __init__(self, model: TrackOn2) -> None:
        """``model``: a plain TrackOn2, which becomes an ``ExportedTrackOn2`` (same parameters and results)."""
        super().__init__()
        if type(model) is not TrackOn2:
            raise TypeError(f"OnlineStep exports a plain TrackOn2 (runtime.fast.set_fast(model, False)), got "
                            f"{type(model).__name__}")
        model.__class__ = ExportedTrackOn2
        self.model = model

    def forward(self, frame: torch.Tensor, coords: torch.Tensor, starting: torch.Tensor, active: torch.Tensor,
                q_init: torch.Tensor, memory: torch.Tensor, memory_empty: torch.Tensor,
                frame_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        features = model.encode(model.resize_frames(frame))
        new = starting.unsqueeze(-1)
        sampled = model.sample_query_features(features.fused, coords).to(q_init.dtype)
        q_init = torch.where(new, sampled, q_init)
        state = QueryMemory(torch.where(new.unsqueeze(-1), torch.zeros_like(memory), memory), memory_empty | new)
        step = model.decode(q_init, features, state, ~active)
        model.write_memory(state, slice(None), step.q, active)
        points = torch.where(active.unsqueeze(-1), step.points, torch.zeros_like(step.points))
        visibility = torch.where(active, step.v_logit.sigmoid(), torch.zeros_like(step.v_logit))
        confidence = torch.where(active, torch.sigmoid(-step.u_logit), torch.zeros_like(step.u_logit))
        return points, visibility, confidence, q_init, state.features, state.empty, frame_index + 1

    def example_inputs(self, slots: int, memory_size: int) -> tuple[torch.Tensor, ...]:
        """Inputs of the right shapes and dtypes for tracing: a random frame at the model input size, ``slots``
        query slots all starting, an empty memory of ``memory_size`` slots."""
        model = self.model
        generator = torch.Generator().manual_seed(0)
        frame = torch.rand(1, 3, model.H, model.W, generator=generator) * 255
        coords = torch.rand(1, slots, 2, generator=generator)
        flags = torch.ones(1, slots, dtype=torch.bool)
        return (frame, coords, flags, flags.clone(), torch.zeros(1, slots, model.D),
                torch.zeros(1, slots, memory_size, model.D), torch.ones(1, slots, memory_size, dtype=torch.bool),
                torch.zeros(1, dtype=torch.long))
