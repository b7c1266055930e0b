"""The MOVi-F training augmentations of the reference (inherited from CoTracker's Kubric dataset).

Photometric: eraser occlusions on frames after the first (a box filled with its mean colour; tracks inside become
invisible), then per-frame colour jitter and per-frame Gaussian blur, each applied to the whole clip with some
probability. Spatial: zero padding, a random zoom with a smoothly drifting per-frame stretch, a crop that starts at
the centroid of the first-frame visible tracks and drifts, and horizontal/vertical flips. Tracks are transformed
with the frames, so every track stays on the pixel it describes. All randomness comes from the ``rng`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trackon2.dataset.image_ops import color_jitter, gaussian_blur, resize_bilinear


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation constants, defaulting to the reference's values."""

    blur_prob: float = 0.25
    color_prob: float = 0.25
    eraser_prob: float = 0.5
    eraser_bounds: tuple[int, int] = (2, 100)
    eraser_max: int = 10
    pad_bounds: tuple[int, int] = (0, 25)
    resize_lim: tuple[float, float] = (0.75, 1.25)
    resize_delta: float = 0.05
    max_crop_offset: int = 15
    h_flip_prob: float = 0.5
    v_flip_prob: float = 0.5


def erase_boxes(
    frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray, rng: np.random.Generator, params: AugmentParams
) -> np.ndarray:
    """Paint mean-colour boxes on frames 1.. (in place on ``visible``); returns the new uint8 frames."""
    frames = frames.astype(np.float32)
    num_frames, height, width = frames.shape[:3]
    lo, hi = params.eraser_bounds
    for t in range(1, num_frames):
        if rng.random() >= params.eraser_prob:
            continue
        for _ in range(rng.integers(1, params.eraser_max + 1)):
            xc, yc = rng.integers(0, width), rng.integers(0, height)
            dx, dy = rng.integers(lo, hi), rng.integers(lo, hi)
            x0, x1 = (np.clip([xc - dx / 2, xc + dx / 2], 0, width).round().astype(np.int64))
            y0, y1 = (np.clip([yc - dy / 2, yc + dy / 2], 0, height).round().astype(np.int64))
            box = frames[t, y0:y1, x0:x1]
            if box.size:
                box[...] = box.reshape(-1, 3).mean(axis=0)
            inside = (tracks[t, :, 0] >= x0) & (tracks[t, :, 0] < x1) & (tracks[t, :, 1] >= y0) & (tracks[t, :, 1] < y1)
            visible[t, inside] = False
    return frames.astype(np.uint8)


def photometric_augment(
    frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray, rng: np.random.Generator, params: AugmentParams
) -> np.ndarray:
    """Eraser, colour jitter and blur on uint8 (T, H, W, 3) frames; ``visible`` is updated in place."""
    frames = erase_boxes(frames, tracks, visible, rng, params)
    if rng.random() < params.color_prob:
        frames = np.stack([color_jitter(frame, rng) for frame in frames])
    if rng.random() < params.blur_prob:
        frames = np.stack([gaussian_blur(frame, rng.uniform(0.1, 2.0)) for frame in frames])
    return frames


def _scaled_sizes(
    num_frames: int, height: int, width: int, crop: tuple[int, int], rng: np.random.Generator, params: AugmentParams
) -> list[tuple[int, int]]:
    """Per-frame (H, W) after the zoom: one base scale plus a stretch that drifts smoothly from frame to frame."""
    scale_x = scale_y = rng.uniform(*params.resize_lim)
    delta_x = delta_y = 0.0
    sizes = []
    for t in range(num_frames):
        if t >= 1:
            new_x = rng.uniform(-params.resize_delta, params.resize_delta)
            new_y = rng.uniform(-params.resize_delta, params.resize_delta)
            delta_x, delta_y = (new_x, new_y) if t == 1 else (0.8 * delta_x + 0.2 * new_x, 0.8 * delta_y + 0.2 * new_y)
        scale_x, scale_y = scale_x + delta_x, scale_y + delta_y
        mean = (scale_x + scale_y) / 2
        scale_x = float(np.clip(0.5 * scale_x + 0.5 * mean, 0.2, 2.0))
        scale_y = float(np.clip(0.5 * scale_y + 0.5 * mean, 0.2, 2.0))
        new_h = max(int(height * scale_y), crop[0] + 10)
        new_w = max(int(width * scale_x), crop[1] + 10)
        scale_x, scale_y = new_w / width, new_h / height
        sizes.append((new_h, new_w))
    return sizes


def _crop_origins(
    sizes: list[tuple[int, int]], start: tuple[int, int], crop: tuple[int, int], rng: np.random.Generator, max_offset: int
) -> list[tuple[int, int]]:
    """Per-frame (y0, x0) of the crop window: starts at ``start`` and drifts with a smoothed random walk."""
    y0, x0 = start
    off_x = off_y = 0
    origins = []
    for t, (new_h, new_w) in enumerate(sizes):
        if t == 1:
            off_x, off_y = rng.integers(-max_offset, max_offset), rng.integers(-max_offset, max_offset)
        elif t > 1:
            off_x = int(off_x * 0.8 + rng.integers(-max_offset, max_offset + 1) * 0.2)
            off_y = int(off_y * 0.8 + rng.integers(-max_offset, max_offset + 1) * 0.2)
        x0, y0 = x0 + off_x, y0 + off_y
        y0 = 0 if new_h == crop[0] else min(max(0, y0), new_h - crop[0])
        x0 = 0 if new_w == crop[1] else min(max(0, x0), new_w - crop[1])
        origins.append((int(y0), int(x0)))
    return origins


def spatial_augment(
    frames: np.ndarray,
    tracks: np.ndarray,
    visible: np.ndarray,
    crop: tuple[int, int],
    rng: np.random.Generator,
    params: AugmentParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad, zoom, crop to ``crop`` = (H, W) and flip. Returns float32 (T, H, W, 3) frames and moved (T, N, 2) tracks."""
    tracks = tracks.astype(np.float32).copy()
    pad_x0, pad_x1, pad_y0, pad_y1 = (rng.integers(*params.pad_bounds) for _ in range(4))
    frames = np.pad(frames.astype(np.float32), ((0, 0), (pad_y0, pad_y1), (pad_x0, pad_x1), (0, 0)))
    tracks[..., 0] += pad_x0
    tracks[..., 1] += pad_y0
    num_frames, height, width = frames.shape[:3]

    sizes = _scaled_sizes(num_frames, height, width, crop, rng, params)
    for t, (new_h, new_w) in enumerate(sizes):
        tracks[t, :, 0] *= new_w / width
        tracks[t, :, 1] *= new_h / height

    anchors = tracks[0, visible[0]]
    mid_x, mid_y = anchors.mean(axis=0) if len(anchors) else (crop[1], crop[0])
    start = (int(mid_y - crop[0] // 2), int(mid_x - crop[1] // 2))
    origins = _crop_origins(sizes, start, crop, rng, params.max_crop_offset)

    out = np.empty((num_frames, crop[0], crop[1], 3), dtype=np.float32)
    for t, ((new_h, new_w), (y0, x0)) in enumerate(zip(sizes, origins)):
        out[t] = resize_bilinear(frames[t], new_h, new_w)[y0 : y0 + crop[0], x0 : x0 + crop[1]]
        tracks[t, :, 0] -= x0
        tracks[t, :, 1] -= y0
    np.clip(out, 0.0, 255.0, out=out)  # resizing can overshoot the pixel range by float rounding

    if rng.random() < params.h_flip_prob:
        out = out[:, :, ::-1]
        tracks[..., 0] = crop[1] - tracks[..., 0]
    if rng.random() < params.v_flip_prob:
        out = out[:, ::-1]
        tracks[..., 1] = crop[0] - tracks[..., 1]
    return np.ascontiguousarray(out), tracks


def center_crop(
    frames: np.ndarray, tracks: np.ndarray, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's no-augmentation crop: vertically centred, at a random horizontal offset."""
    height, width = frames.shape[1:3]
    y0 = 0 if crop[0] >= height else (height - crop[0]) // 2
    x0 = 0 if crop[1] >= width else int(rng.integers(0, width - crop[1]))
    tracks = tracks.astype(np.float32).copy()
    tracks[..., 0] -= x0
    tracks[..., 1] -= y0
    return frames[:, y0 : y0 + crop[0], x0 : x0 + crop[1]].astype(np.float32), tracks
