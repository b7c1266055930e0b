"""The ONNX runtime behind the Predictor's streaming methods with torch tensors in and out, so that the demo, the
live tracking loop and the web app's Live tab run an exported graph where they ran a Predictor.

The graph itself runs in ONNX Runtime (``export.runtime``); this module only converts tensors at the boundary.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from trackon2.export.runtime import OnnxTracker, StreamInputError
from trackon2.model.inputs import InputError
from trackon2.runtime.predictor import FrameTracks


class OnnxPredictor:
    """``reset``, ``add_queries``, ``remove_queries``, ``query_ids``, ``forward_frame`` and ``track_frame`` of
    ``Predictor``, run by an ``OnnxTracker``; frames may be torch (3, H, W) / (1, 3, H, W) or numpy (H, W, 3)."""

    def __init__(self, tracker: OnnxTracker) -> None:
        self.tracker = tracker

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu", support_grid_size: int | None = None,
                    threads: int | None = None) -> "OnnxPredictor":
        return cls(OnnxTracker(folder, device=device, threads=threads, support_grid_size=support_grid_size))

    @classmethod
    def on_torch_device(cls, folder: str | Path, torch_device: str,
                        support_grid_size: int | None = None) -> "OnnxPredictor":
        """``from_folder`` on ONNX Runtime's device for a torch device string (any CUDA device: 'cuda', else 'cpu'),
        as the demo's and the app's ``--device`` give it."""
        device = "cuda" if torch.device(torch_device).type == "cuda" else "cpu"
        return cls.from_folder(folder, device=device, support_grid_size=support_grid_size)

    def __copy__(self) -> "OnnxPredictor":
        """A predictor with its own stream that shares the graph session (one per browser session)."""
        return OnnxPredictor(copy.copy(self.tracker))

    @property
    def allow_outside_queries(self) -> bool:
        return self.tracker.allow_outside_queries

    @property
    def query_ids(self) -> list[int]:
        return self.tracker.query_ids

    @property
    def frame_index(self) -> int:
        return self.tracker.frame_index

    def reset(self) -> None:
        self.tracker.reset()

    def add_queries(self, points: torch.Tensor | np.ndarray) -> list[int]:
        with _as_input_error():
            return self.tracker.add_queries(_numpy(points))

    def remove_queries(self, ids: list[int]) -> None:
        with _as_input_error():
            self.tracker.remove_queries(ids)

    def forward_frame(self, frame: torch.Tensor | np.ndarray,
                      new_queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tracks = self.track_frame(frame, new_queries)
        return tracks.points, tracks.visible

    def track_frame(self, frame: torch.Tensor | np.ndarray, new_queries: torch.Tensor | None = None) -> FrameTracks:
        if isinstance(frame, torch.Tensor):
            image = frame[0] if frame.dim() == 4 and frame.shape[0] == 1 else frame
            if image.dim() != 3 or image.shape[0] != 3:
                raise InputError(f"frame must have shape (3, H, W) or (1, 3, H, W), got {tuple(frame.shape)}")
            frame = image.permute(1, 2, 0).cpu().numpy()
        with _as_input_error():
            tracks = self.tracker.track_frame(frame, None if new_queries is None else _numpy(new_queries))
        return FrameTracks(ids=tracks.ids, points=torch.from_numpy(tracks.points),
                           visible=torch.from_numpy(tracks.visible), confidence=torch.from_numpy(tracks.confidence))


def _numpy(points: torch.Tensor | np.ndarray) -> np.ndarray:
    return points.detach().float().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)


@contextlib.contextmanager
def _as_input_error() -> Iterator[None]:
    """The runtime's bad-input errors as the ``InputError`` the front ends report in one line."""
    try:
        yield
    except StreamInputError as err:
        raise InputError(str(err)) from None
