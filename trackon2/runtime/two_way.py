"""Tracking whole videos in both directions: each query forward from its frame (the online tracker as it is) and
backward to frame 0, by running the same forward-only tracker over the time-reversed clip.

For one video whose latest query frame is ``last``, the backward pass tracks frames last, last - 1, ..., 0 (the
"reversed clip", nothing after ``last``) with every query that starts after frame 0, each starting on reversed
frame ``last - t``; it is one batched pass whatever the number of distinct query frames. The halves meet at the
query frame, which belongs to the forward half: frames t, t + 1, ... come from the forward pass, frames
0 .. t - 1 from the backward pass. So the forward half is exactly the forward-only result, and the backward half
exactly a forward-only run on the reversed clip.

The tracker is any function ``track(video, queries, origin) -> outputs`` with video (B, T, ...) and queries
(B, N, 3) as (t, x, y), returning a tuple of per-frame tensors each (B, T, N, ...): ``Predictor``'s forward-only
pass (tracks, visibility) or a stream of decoded frames that also gives confidence (``video.clip_tracking``).
``origin`` is None for the forward pass and (video index, last) for a backward pass, whose frame r is frame
``last - r`` of that video (a tracker may reuse what it computed for that frame going forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

TrackFn = Callable[[torch.Tensor, torch.Tensor, "tuple[int, int] | None"], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class BackwardPlan:
    """The backward pass of one video: which queries it tracks and the reversed clip they start on."""

    columns: torch.Tensor  # (n,) long: the queries that start after frame 0, in their order among all N
    starts: torch.Tensor  # (n,) long: their query frames
    last: int  # the latest query frame: the reversed clip is frames last, ..., 0

    @classmethod
    def of(cls, queries: torch.Tensor) -> "BackwardPlan | None":
        """The plan for (N, 3) queries (t, x, y); None when every query starts on frame 0."""
        starts = queries[:, 0].round().long().cpu()
        columns = torch.nonzero(starts > 0).flatten()
        if len(columns) == 0:
            return None
        return cls(columns, starts[columns], int(starts.max()))

    @property
    def num_frames(self) -> int:
        return self.last + 1

    def reversed_queries(self, queries: torch.Tensor) -> torch.Tensor:
        """(1, n, 3) queries of the reversed clip from one video's (N, 3): start frame last - t, same point."""
        chosen = queries[self.columns.to(queries.device)]
        times = (self.last - self.starts).to(chosen)
        return torch.cat([times[:, None], chosen[:, 1:]], dim=1)[None]

    def merge(self, forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
        """One video's forward output (1, T, N, ...) with the backward output (1, last + 1, n, ...) of the reversed
        clip put on the frames before each query's frame; a new tensor."""
        merged = forward.clone()
        columns = self.columns.to(forward.device)
        ahead = backward.flip(1).to(forward)  # indexed by original frame 0..last
        frames = torch.arange(self.num_frames, device=forward.device)[:, None]
        before = frames < self.starts.to(forward.device)[None, :]  # (last + 1, n)
        before = before.reshape(1, *before.shape, *([1] * (forward.dim() - 3)))
        head = merged[:, : self.num_frames, columns]
        merged[:, : self.num_frames, columns] = torch.where(before, ahead, head)
        return merged


def reversed_clip(video: torch.Tensor, last: int) -> torch.Tensor:
    """Frames last, last - 1, ..., 0 of a (B, T, ...) video."""
    return video[:, : last + 1].flip(1)


def track_two_way(track: TrackFn, video: torch.Tensor, queries: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``track`` forward, then backward to frame 0 for the queries that start later (one pass per video).

    Returns ``track``'s outputs with, for every query, the frames before its query frame filled in from the
    backward pass. Without queries (``track``'s default grid on frame 0) or when all start on frame 0 this is the
    forward pass alone. Videos of a batch get their own backward pass (each over its own reversed clip), so each
    result is the same as when its video is tracked alone.
    """
    outputs = track(video, queries, None)  # checks the video and the queries first
    if queries is None:
        return outputs
    merged = list(outputs)
    for index in range(video.shape[0]):
        plan = BackwardPlan.of(queries[index])
        if plan is None:
            continue
        backward = track(reversed_clip(video[index : index + 1], plan.last), plan.reversed_queries(queries[index]),
                         (index, plan.last))
        for position, (full, half) in enumerate(zip(merged, backward)):
            video_result = plan.merge(full[index : index + 1], half)
            merged[position] = torch.cat([full[:index], video_result, full[index + 1 :]], dim=0)
    return tuple(merged)
