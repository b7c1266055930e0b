"""Drawing tracked points and their recent trails onto video frames (numpy only)."""

from __future__ import annotations

import colorsys

import numpy as np


def point_colours(count: int, seed: int = 0) -> np.ndarray:
    """Distinct, saturated RGB colours, one per point: (count, 3) uint8."""
    hues = (np.arange(count) / max(count, 1) + np.random.default_rng(seed).random()) % 1.0
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.9, 1.0)] for h in hues], dtype=np.uint8)


def _disc(frame: np.ndarray, x: float, y: float, radius: int, colour: np.ndarray) -> None:
    height, width = frame.shape[:2]
    cx, cy = int(round(x)), int(round(y))
    y0, y1 = max(cy - radius, 0), min(cy + radius + 1, height)
    x0, x1 = max(cx - radius, 0), min(cx + radius + 1, width)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    frame[y0:y1, x0:x1][inside] = colour


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
            _disc(canvas, *points[n], radius if last else max(1, radius // 2), (colours[n] * fade).astype(np.uint8))
    return canvas
