"""One user's video in the web app: its frames and the query points clicked on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trackon2.model.inputs import InputError
from trackon2.runtime.predictor import get_points_on_a_grid
from trackon2.video.drawing import draw_disc, draw_ring, position_colours
from trackon2.video.files import VideoReadError, iter_video_frames, video_fps

MAX_GRID_SIZE = 32
TRAIL = 8  # frames of trail drawn each way of the shown frame once tracked


@dataclass
class Clip:
    """Decoded frames (RGB uint8) and the queries (t, x, y) in video pixels, in the order they were added."""

    name: str
    frames: list[np.ndarray]
    fps: float
    queries: list[tuple[int, float, float]] = field(default_factory=list)
    truncated: bool = False
    tracked: dict[str, np.ndarray] | None = None  # the last run's result while the points are unchanged

    @property
    def height(self) -> int:
        return self.frames[0].shape[0]

    @property
    def width(self) -> int:
        return self.frames[0].shape[1]

    def add_point(self, t: int, x: float, y: float) -> None:
        """Add a query at frame t; a point outside the image is rejected with a message naming the image size."""
        if not 0 <= t < len(self.frames):
            raise InputError(f"frame {t} does not exist: the video has frames 0-{len(self.frames) - 1}")
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            raise InputError(f"point ({x:.0f}, {y:.0f}) is outside the {self.width}x{self.height} image")
        self.queries.append((int(t), float(x), float(y)))
        self.tracked = None

    def add_grid(self, t: int, size: int) -> None:
        if not 1 <= size <= MAX_GRID_SIZE:
            raise InputError(f"grid size must be between 1 and {MAX_GRID_SIZE}, got {size}")
        for x, y in get_points_on_a_grid(size, (self.height, self.width))[0].tolist():
            self.add_point(t, x, y)

    def undo(self) -> None:
        if self.queries:
            self.queries.pop()
            self.tracked = None

    def clear(self) -> None:
        self.queries.clear()
        self.tracked = None

    def query_array(self) -> np.ndarray:
        return np.asarray(self.queries, dtype=np.float32).reshape(-1, 3)

    def frame_with_points(self, t: int) -> np.ndarray:
        """Frame t with the queries drawn: filled discs for those clicked on t, rings for those from other frames;
        once tracked, also each track's point on t with its trail in both directions (``TRAIL`` frames each way)."""
        canvas = self.frames[t].copy()
        queries = self.query_array()
        if self.tracked is not None:
            draw_two_way_trails(canvas, self.tracked, t, position_colours(queries[:, 1:], self.width, self.height))
        for (start, x, y), colour in zip(queries, position_colours(queries[:, 1:], self.width, self.height)):
            if int(start) == t:
                draw_disc(canvas, x, y, 5, np.zeros(3, np.uint8))
                draw_disc(canvas, x, y, 4, colour)
            else:
                draw_ring(canvas, x, y, 4, colour)
        return canvas

    def describe_points(self) -> str:
        if not self.queries:
            return "No points yet: click on the frame, or add a grid."
        frames = sorted({t for t, _, _ in self.queries})
        shown = ", ".join(f"({x:.0f}, {y:.0f}) @ frame {t}" for t, x, y in self.queries[:8])
        more = f", ... ({len(self.queries) - 8} more)" if len(self.queries) > 8 else ""
        return f"**{len(self.queries)} point(s)** on frame(s) {frames}: {shown}{more}"


def draw_two_way_trails(canvas: np.ndarray, tracked: dict[str, np.ndarray], t: int, colours: np.ndarray) -> None:
    """Each track that exists on frame t: its visible points on the ``TRAIL`` frames before and after t as small
    discs fading with the distance in time, then its point on t (a disc when visible, a ring when occluded)."""
    tracks, visibility, first = tracked["tracks"], tracked["visibility"], tracked["first_frame"]
    frames = range(max(t - TRAIL, 0), min(t + TRAIL, len(tracks) - 1) + 1)
    for n in np.flatnonzero(first <= t):
        for other in frames:
            if other != t and other >= first[n] and visibility[other, n]:
                fade = 1.0 - abs(other - t) / (TRAIL + 1)
                draw_disc(canvas, *tracks[other, n], 1, (colours[n] * fade).astype(np.uint8))
        draw = draw_disc if visibility[t, n] else draw_ring
        draw(canvas, *tracks[t, n], 3, colours[n])


def load_clip(path: str | Path, max_frames: int) -> Clip:
    """Decode up to ``max_frames`` frames of a video file. A file that is not a readable video, or that holds a
    single image, is an InputError naming the file (not the server's copy of it)."""
    name = Path(path).name
    frames = []
    truncated = False
    try:
        for frame in iter_video_frames(path):
            if len(frames) == max_frames:
                truncated = True
                break
            frames.append(frame)
    except VideoReadError:
        if frames:
            raise InputError(f"{name} is corrupt after {len(frames)} frame(s): upload a complete video") from None
        raise InputError(f"{name} is not a video that can be read: upload a video file (MP4, WebM, MOV, AVI, ...)") \
            from None
    if len(frames) == 1 and not truncated:
        raise InputError(f"{name} is a single image, not a video: upload a video file")
    return Clip(name=name, frames=frames, fps=video_fps(path), truncated=truncated)
