"""Procedural point-tracking clips with exact ground truth.

A clip is a moving textured background with several textured shapes in front of it, each shape translating,
rotating and scaling over time. Every pixel is rendered by mapping its centre back through the inverse transform of
each layer, so a track is simply a fixed point of a layer pushed through that layer's forward transform, and a point
is visible when it lies inside the frame and no nearer shape covers it.

Coordinates are continuous pixel coordinates: pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)`` and is
sampled at its centre ``(j + 0.5, i + 0.5)``. This is the convention of TAP-Vid (normalised ``x / W``) and of the
MOVi-F augmentations (flip ``x -> W - x``, resize ``x -> s * x``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPE_KINDS = ("ellipse", "rectangle", "triangle", "pentagon", "hexagon")
_POLYGON_SIDES = {"triangle": 3, "pentagon": 5, "hexagon": 6}


@dataclass(frozen=True)
class SyntheticClip:
    """One generated clip: ``video`` uint8 (T, H, W, 3), ``tracks`` float32 (T, N, 2) as (x, y) pixels,
    ``visibility`` bool (T, N)."""

    video: np.ndarray
    tracks: np.ndarray
    visibility: np.ndarray


@dataclass(frozen=True)
class _Texture:
    """A smooth colour field: base colour plus a few plane waves, evaluated at continuous coordinates."""

    base: np.ndarray  # (3,)
    freqs: np.ndarray  # (K, 2) radians per pixel
    phases: np.ndarray  # (K,)
    amps: np.ndarray  # (K, 3)

    @staticmethod
    def random(rng: np.random.Generator, waves: int = 3) -> "_Texture":
        angle = rng.uniform(0, 2 * np.pi, waves)
        magnitude = rng.uniform(0.06, 0.3, waves)
        return _Texture(
            base=rng.uniform(50, 205, 3),
            freqs=np.stack([np.cos(angle), np.sin(angle)], axis=1) * magnitude[:, None],
            phases=rng.uniform(0, 2 * np.pi, waves),
            amps=rng.uniform(-35, 35, (waves, 3)),
        )

    def colour(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """RGB float32 of shape ``u.shape + (3,)``."""
        out = np.broadcast_to(self.base.astype(np.float32), u.shape + (3,)).copy()
        for (fu, fv), phase, amp in zip(self.freqs, self.phases, self.amps):
            wave = np.sin(u * np.float32(fu) + v * np.float32(fv) + np.float32(phase))
            out += wave[..., None] * amp.astype(np.float32)
        return np.clip(out, 0, 255)


@dataclass(frozen=True)
class _Shape:
    """A textured shape with its per-frame similarity transform (centre, angle, scale)."""

    kind: str
    half_size: np.ndarray  # (2,) half extents (a, b) in shape units
    texture: _Texture
    centre: np.ndarray  # (T, 2)
    angle: np.ndarray  # (T,)
    scale: np.ndarray  # (T,)

    def to_local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map image points (leading axis T) to shape coordinates through the inverse transform."""
        extra = (slice(None),) + (None,) * (x.ndim - 1)
        cos, sin = np.cos(self.angle)[extra], np.sin(self.angle)[extra]
        dx = x - self.centre[:, 0][extra]
        dy = y - self.centre[:, 1][extra]
        inv_s = (1.0 / self.scale)[extra]
        return ((cos * dx + sin * dy) * inv_s).astype(np.float32), ((-sin * dx + cos * dy) * inv_s).astype(np.float32)

    def to_image(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Map fixed shape points (N,) to image positions (T, N, 2)."""
        cos, sin = np.cos(self.angle)[:, None], np.sin(self.angle)[:, None]
        s = self.scale[:, None]
        x = self.centre[:, 0:1] + s * (cos * u[None] - sin * v[None])
        y = self.centre[:, 1:2] + s * (sin * u[None] + cos * v[None])
        return np.stack([x, y], axis=-1)

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Inside test in shape coordinates."""
        uu, vv = u / np.float32(self.half_size[0]), v / np.float32(self.half_size[1])
        if self.kind == "ellipse":
            return uu * uu + vv * vv <= 1.0
        if self.kind == "rectangle":
            return np.maximum(np.abs(uu), np.abs(vv)) <= 1.0
        sides = _POLYGON_SIDES[self.kind]
        inside = np.ones(np.shape(u), dtype=bool)
        apothem = np.float32(np.cos(np.pi / sides))
        for k in range(sides):
            normal_angle = np.pi / 2 + (2 * k + 1) * np.pi / sides
            inside &= uu * np.float32(np.cos(normal_angle)) + vv * np.float32(np.sin(normal_angle)) <= apothem
        return inside


def _random_shape(rng: np.random.Generator, frames: int, height: int, width: int) -> _Shape:
    t = np.arange(frames, dtype=np.float64)
    size = min(height, width)
    start = rng.uniform([0.15 * width, 0.15 * height], [0.85 * width, 0.85 * height])
    velocity = rng.uniform(-1.0, 1.0, 2) * size * 0.012
    accel = rng.uniform(-1.0, 1.0, 2) * size * 0.0003
    centre = start[None] + velocity[None] * t[:, None] + accel[None] * t[:, None] ** 2
    angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.06, 0.06) * t
    scale = np.exp(rng.uniform(-0.015, 0.015) * t) * (1 + 0.08 * np.sin(rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6)))
    return _Shape(
        kind=str(rng.choice(SHAPE_KINDS)),
        half_size=rng.uniform(0.08, 0.2, 2) * size,
        texture=_Texture.random(rng),
        centre=centre,
        angle=angle,
        scale=scale,
    )


def _background_offset(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """(T, 2) shift added to image coordinates to get background coordinates (a smooth camera pan)."""
    t = np.arange(frames, dtype=np.float64)[:, None]
    velocity = rng.uniform(-1.0, 1.0, 2) * size * 0.006
    wobble = rng.uniform(-1.0, 1.0, 2) * size * 0.02
    return velocity * t + wobble * np.sin(t * rng.uniform(0.1, 0.3) + rng.uniform(0, 6, 2))


def _sample_inside(rng: np.random.Generator, shape: _Shape, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points inside a shape, in shape coordinates (rejection sampling in the bounding box)."""
    us, vs = [], []
    while sum(len(u) for u in us) < count:
        u = rng.uniform(-1, 1, 4 * count + 8) * shape.half_size[0]
        v = rng.uniform(-1, 1, 4 * count + 8) * shape.half_size[1]
        keep = shape.contains(u, v)
        us.append(u[keep])
        vs.append(v[keep])
    return np.concatenate(us)[:count], np.concatenate(vs)[:count]


def generate_clip(
    seed: int,
    num_frames: int = 24,
    height: int = 256,
    width: int = 256,
    num_points: int = 64,
    num_shapes: int = 4,
) -> SyntheticClip:
    """Render one clip deterministically from ``seed``.

    About a third of the points lie on the background, the rest are spread over the shapes; shapes are drawn in
    list order, so a later shape covers an earlier one.
    """
    if min(num_frames, height, width, num_points) < 1 or num_shapes < 0:
        raise ValueError("num_frames, height, width and num_points must be positive and num_shapes non-negative")
    rng = np.random.default_rng(seed)
    background = _Texture.random(rng, waves=4)
    offset = _background_offset(rng, num_frames, min(height, width))
    shapes = [_random_shape(rng, num_frames, height, width) for _ in range(num_shapes)]

    ys = np.arange(height, dtype=np.float32) + 0.5
    xs = np.arange(width, dtype=np.float32) + 0.5
    grid_x = np.broadcast_to(xs[None, None, :], (num_frames, height, width))
    grid_y = np.broadcast_to(ys[None, :, None], (num_frames, height, width))
    video = background.colour(
        grid_x + offset[:, 0, None, None].astype(np.float32), grid_y + offset[:, 1, None, None].astype(np.float32)
    )
    for shape in shapes:
        u, v = shape.to_local(grid_x, grid_y)
        inside = shape.contains(u, v)
        video[inside] = shape.texture.colour(u[inside], v[inside])

    layer = rng.integers(-1, num_shapes, num_points) if num_shapes else np.full(num_points, -1)
    tracks = np.zeros((num_frames, num_points, 2), dtype=np.float64)
    on_background = np.flatnonzero(layer == -1)
    start = rng.uniform([0, 0], [width, height], (len(on_background), 2))
    tracks[:, on_background] = start[None] + offset[0][None, None] - offset[:, None, :]
    for index, shape in enumerate(shapes):
        members = np.flatnonzero(layer == index)
        if len(members):
            tracks[:, members] = shape.to_image(*_sample_inside(rng, shape, len(members)))

    visibility = (tracks[..., 0] >= 0) & (tracks[..., 0] < width) & (tracks[..., 1] >= 0) & (tracks[..., 1] < height)
    for index, shape in enumerate(shapes):
        behind = layer < index
        u, v = shape.to_local(tracks[..., 0], tracks[..., 1])
        visibility &= ~(shape.contains(u, v) & behind[None])
    return SyntheticClip(
        video=np.round(video).astype(np.uint8),
        tracks=tracks.astype(np.float32),
        visibility=visibility,
    )
