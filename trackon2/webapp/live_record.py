"""What a live webcam session has tracked so far, kept so that it can be downloaded like the demo's results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trackon2.runtime.predictor import FrameTracks


@dataclass
class LiveTracks:
    """Per processed frame, the tracks of every query added so far (by query id), in frame pixels."""

    starts: dict[int, tuple[int, float, float]] = field(default_factory=dict)  # id -> (frame, x, y) when added
    frames: list[FrameTracks] = field(default_factory=list)

    def add_query(self, query_id: int, frame: int, x: float, y: float) -> None:
        self.starts[query_id] = (frame, x, y)

    def add_frame(self, tracks: FrameTracks) -> None:
        self.frames.append(FrameTracks(list(tracks.ids), tracks.points.float().cpu(), tracks.visible.cpu(),
                                       tracks.confidence.float().cpu()))

    def clear(self) -> None:
        self.starts.clear()
        self.frames.clear()

    def as_arrays(self) -> dict[str, np.ndarray]:
        """queries (N, 3) as (start frame, x, y), tracks (T, N, 2), visibility (T, N), confidence (T, N) in the
        order the points were added; a query is (0, 0) and not visible before its start and after its removal."""
        ids = sorted(self.starts)
        column = {query_id: i for i, query_id in enumerate(ids)}
        count, steps = len(ids), len(self.frames)
        tracks = np.zeros((steps, count, 2), np.float32)
        visibility = np.zeros((steps, count), bool)
        confidence = np.zeros((steps, count), np.float32)
        for t, frame in enumerate(self.frames):
            columns = [column[query_id] for query_id in frame.ids]
            tracks[t, columns] = frame.points.numpy()
            visibility[t, columns] = frame.visible.numpy()
            confidence[t, columns] = frame.confidence.numpy()
        queries = np.asarray([self.starts[query_id] for query_id in ids], np.float32).reshape(-1, 3)
        return {"queries": queries, "tracks": tracks, "visibility": visibility, "confidence": confidence}
