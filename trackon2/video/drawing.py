"""Drawing tracked points and their recent trails onto video frames (numpy only)."""

from __future__ import annotations

import colorsys
from collections import deque

import numpy as np


def point_colours(count: int, seed: int = 0) -> np.ndarray:
    """Distinct, saturated RGB colours, one per point: (count, 3) uint8."""
    hues = (np.arange(count) / max(count, 1) + np.random.default_rng(seed).random()) % 1.0
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.9, 1.0)] for h in hues], dtype=np.uint8)


def _disc_window(frame: np.ndarray, x: float, y: float, radius: int):
    """The frame window around (x, y) clipped to the image and each pixel's squared distance to the centre, or None
    when the disc lies wholly outside the frame."""
    height, width = frame.shape[:2]
    cx, cy = int(round(x)), int(round(y))
    y0, y1 = max(cy - radius, 0), min(cy + radius + 1, height)
    x0, x1 = max(cx - radius, 0), min(cx + radius + 1, width)
    if y0 >= y1 or x0 >= x1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return frame[y0:y1, x0:x1], (yy - cy) ** 2 + (xx - cx) ** 2


def draw_disc(frame: np.ndarray, x: float, y: float, radius: int, colour: np.ndarray) -> None:
    """A filled disc (visible points)."""
    window = _disc_window(frame, x, y, radius)
    if window is not None:
        pixels, distance = window
        pixels[distance <= radius**2] = colour


def draw_frame(frame: np.ndarray, recent_tracks: np.ndarray, recent_visibility: np.ndarray, colours: np.ndarray,
               radius: int = 3) -> np.ndarray:
    """Overlay one frame: recent_tracks (k, N, 2) / recent_visibility (k, N) end with this frame's points.

    The last entry is drawn as a filled disc, the earlier ones as a fading trail.
    """
    canvas = frame.copy()
    steps = len(recent_tracks)
    for age, (points, visible) in enumerate(zip(recent_tracks, recent_visibility)):
        last = age == steps - 1
        fade = 1.0 if last else (age + 1) / steps
        for n in np.flatnonzero(visible):
            draw_disc(canvas, *points[n], radius if last else max(1, radius // 2), (colours[n] * fade).astype(np.uint8))
    return canvas


def position_colours(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """A colour per point from where it starts: hue follows x, brightness follows y. (n, 2) -> (n, 3) uint8.

    Neighbouring points get similar colours, so a tracked grid reads as a smooth colour field.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    hues = np.clip(points[:, 0] / max(width, 1), 0.0, 1.0) * 0.85
    values = 1.0 - 0.45 * np.clip(points[:, 1] / max(height, 1), 0.0, 1.0)
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, v)] for h, v in zip(hues, values)],
                    dtype=np.uint8).reshape(-1, 3)


def draw_ring(frame: np.ndarray, x: float, y: float, radius: int, colour: np.ndarray, width: int = 2) -> None:
    """A circle outline ``width`` pixels thick (occluded points)."""
    window = _disc_window(frame, x, y, radius)
    if window is not None:
        pixels, distance = window
        pixels[(distance <= radius**2) & (distance > (radius - width) ** 2)] = colour


class TrailRenderer:
    """Draws tracks keyed by query id: colour fixed by the first position seen, a short fading trail of the
    visible positions, a filled disc when visible now and a hollow ring when occluded."""

    def __init__(self, trail_length: int = 8, radius: int = 4):
        self.trail_length = trail_length
        self.radius = radius
        self._colours: dict[int, np.ndarray] = {}
        self._trails: dict[int, deque] = {}

    def draw(self, frame: np.ndarray, ids: list[int], points: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Overlay this frame's points (n, 2) / visibility (n,) for query ``ids``; queries not listed are forgotten."""
        height, width = frame.shape[:2]
        for query_id in set(self._trails) - set(ids):
            del self._trails[query_id], self._colours[query_id]
        canvas = frame.copy()
        for query_id, point, seen in zip(ids, np.asarray(points, np.float64), np.asarray(visible, bool)):
            if query_id not in self._colours:
                self._colours[query_id] = position_colours(point[None], width, height)[0]
                self._trails[query_id] = deque(maxlen=self.trail_length)
            colour, trail = self._colours[query_id], self._trails[query_id]
            trail.append(point if seen else None)
            for age, past in enumerate(list(trail)[:-1]):
                if past is not None:
                    fade = (age + 1) / len(trail)
                    draw_disc(canvas, *past, max(1, self.radius // 3), (colour * fade).astype(np.uint8))
            if seen:
                draw_disc(canvas, *point, self.radius, colour)
            else:
                draw_ring(canvas, *point, self.radius, colour)
        return canvas
