"""Streaming Track-On2 on exported graphs, with numpy and ONNX Runtime: no PyTorch, no model code.

    from trackon2.export.runtime import OnnxTracker

    tracker = OnnxTracker("exported/trackon2-dinov2")          # the folder written by ``python -m export.onnx``
    ids = tracker.add_queries([[120.0, 64.0], [30.0, 40.0]])   # (x, y) in frame pixels; start on the next frame
    for frame in frames:                                       # (H, W, 3) RGB uint8 numpy images
        tracks = tracker.track_frame(frame)                    # tracks.ids, .points, .visible, .confidence

The interface is the Predictor's stream (``reset``, ``add_queries`` with ids, ``remove_queries``,
``track_frame``, ``forward_frame``), with the same rules: a support grid of queries starts on the first frame,
queries queued before a frame start on it, and on its start frame a track is the query point itself (visible,
confidence 1). Everything the graph needs (sizes, state layout, visibility threshold) is read from the JSON
beside it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trackon2.export.backends import OrtSession
from trackon2.export.layout import FORMAT, FORMAT_VERSION, MANIFEST_NAME, METADATA_KEY, OUTPUT_NAMES

NUMPY_DTYPES = {"float32": np.float32, "bool": np.bool_, "int64": np.int64}


class ExportFormatError(RuntimeError):
    """An export folder this runtime cannot use: missing files, or graphs of another format version."""


class StreamInputError(ValueError):
    """A frame or query point that the tracker cannot use."""


@dataclass
class FrameTracks:
    """One frame's results for the user queries started so far, in the order of ``ids`` (numpy arrays)."""

    ids: list[int]
    points: np.ndarray  # (N, 2) float32 x, y in frame pixels
    visible: np.ndarray  # (N,) bool
    confidence: np.ndarray  # (N,) float32 in [0, 1]
    visibility: np.ndarray  # (N,) float32: the probability ``visible`` thresholds at delta_v (1 where pinned)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The export's JSON, checked to be of this runtime's format version."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ExportFormatError(f"{folder} holds no {MANIFEST_NAME}: give a folder written by python -m export.onnx")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ExportFormatError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportFormatError(f"{path} does not describe a {FORMAT} export")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ExportFormatError(f"{folder} holds graphs of export format version {version}, but this runtime reads "
                                f"version {FORMAT_VERSION}: export them again with this version's "
                                "python -m export.onnx")
    return manifest


def linspace32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace`` in float32: the first half counted up from ``start``, the second down from ``end``."""
    start32, end32 = np.float32(start), np.float32(end)
    step = (end32 - start32) / np.float32(steps - 1)
    index = np.arange(steps)
    up = start32 + step * index.astype(np.float32)
    down = end32 - step * (steps - 1 - index).astype(np.float32)
    return np.where(index < steps // 2, up, down).astype(np.float32)


def support_grid(size: int, height: int, width: int) -> np.ndarray:
    """The Predictor's support grid: size x size (x, y) points over the frame, margin width / 64: (size^2, 2)."""
    if size == 0:
        return np.zeros((0, 2), np.float32)
    if size == 1:
        return np.array([[width / 2, height / 2]], np.float32)
    margin = width / 64
    ys = linspace32(margin, height - margin, size)
    xs = linspace32(margin, width - margin, size)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x, grid_y], axis=-1).reshape(-1, 2)


class OnnxTracker:
    """Tracks one stream with the step graph of an export folder.

    ``device``: 'cpu', or 'cuda' / 'tensorrt' (ONNX Runtime's execution providers, where the onnxruntime-gpu
    build is installed); ``threads``: intra-op threads (None: ONNX Runtime's default). ``support_grid_size``
    (default: the export's), ``allow_outside_queries`` and ``pin_query_points`` as the Predictor's. A copy
    (``copy.copy``) shares the graph session; after ``reset`` it tracks a stream of its own.
    """

    def __init__(self, folder: str | Path, device: str = "cpu", threads: int | None = None,
                 support_grid_size: int | None = None,
                 allow_outside_queries: bool = False, pin_query_points: bool = True) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        graph = self.folder / self.manifest["graphs"]["step"]
        if not graph.is_file():
            raise ExportFormatError(f"{graph} is missing: export the folder again")
        self.session = OrtSession(graph, device, threads)
        self._check_graph()
        self.input_size = tuple(self.manifest["input_size"])
        self.dim = int(self.manifest["feature_dim"])
        self.memory_size = int(self.manifest["memory_size"])
        self.delta_v = np.float32(self.manifest["delta_v"])
        self.support_grid_size = (self.manifest["support_grid_size"] if support_grid_size is None
                                  else support_grid_size)
        self.max_queries = int(self.manifest["num_queries"])
        self.allow_outside_queries = allow_outside_queries
        self.pin_query_points = pin_query_points
        self.reset()

    def _check_graph(self) -> None:
        """The graph's own version stamp and inputs must be those the JSON describes."""
        version = self.session.metadata().get(METADATA_KEY)
        if version is not None and version != str(FORMAT_VERSION):
            raise ExportFormatError(f"{self.folder}: the graph is of export format version {version}, this runtime "
                                    f"reads version {FORMAT_VERSION}: export it again")
        shapes = self.session.input_shapes()
        expected = {name: entry["shape"] for name, entry in self.manifest["tensors"].items()
                    if entry["role"] != "output"}
        if set(shapes) != set(expected):
            raise ExportFormatError(f"{self.folder}: the graph's inputs {sorted(shapes)} are not the "
                                    f"{sorted(expected)} its JSON describes: export the folder again")
        for name, shape in expected.items():
            fixed = [(got, want) for got, want in zip(shapes[name], shape) if isinstance(want, int)]
            if len(shapes[name]) != len(shape) or any(got != want for got, want in fixed):
                raise ExportFormatError(f"{self.folder}: graph input {name} has shape {shapes[name]}, its JSON "
                                        f"says {shape}: export the folder again")

    # ------------------------------------------------------------------------------------------------ stream
    def reset(self) -> None:
        """Forget the stream: the next frame starts a new video (query ids start again at 0)."""
        self._frame_size: tuple[int, int] | None = None
        self._slot_ids: list[int | None] = []  # per slot: a user query id, None for the support grid
        self._active = np.zeros(0, bool)
        self._coords = np.zeros((1, 0, 2), np.float32)
        self._state: dict[str, np.ndarray] = {}
        self._pending: list[tuple[int, np.ndarray]] = []
        self._next_id = 0
        self._warned_range = False
        self.frame_index = 0

    @property
    def query_ids(self) -> list[int]:
        """Ids of the user queries in output order (started ones, then pending)."""
        return self._started_ids() + [query_id for query_id, _ in self._pending]

    def _started_ids(self) -> list[int]:
        return sorted(query_id for query_id, active in zip(self._slot_ids, self._active)
                      if active and query_id is not None)

    def add_queries(self, points: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
        """Queue (n, 2) points (x, y) in frame pixels to start on the next frame; returns their stable ids."""
        points = np.asarray(points, dtype=np.float32)
        if points.ndim == 3 and points.shape[0] == 1:
            points = points[0]
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise StreamInputError(f"queries must be a non-empty (n, 2) array of (x, y), got shape {points.shape}")
        if not np.isfinite(points).all():
            raise StreamInputError("queries contain NaN or infinite values")
        if len(self.query_ids) + len(points) > self.max_queries:
            raise StreamInputError(f"this export tracks at most {self.max_queries} user queries at once (python -m "
                                   f"export.onnx --num_queries); {len(self.query_ids)} are tracked or queued")
        if self._frame_size is not None:
            self._check_inside(points)
        ids = list(range(self._next_id, self._next_id + len(points)))
        self._next_id += len(ids)
        self._pending.extend(zip(ids, points))
        return ids

    def remove_queries(self, ids: Sequence[int]) -> None:
        """Stop tracking the queries with these ids and free their slots."""
        unknown = sorted(set(ids) - set(self.query_ids))
        if unknown:
            raise StreamInputError(f"no query with id(s) {unknown}; current ids: {self.query_ids}")
        removed = set(ids)
        self._pending = [(query_id, xy) for query_id, xy in self._pending if query_id not in removed]
        gone = np.array([query_id in removed for query_id in self._slot_ids], bool)
        if gone.any():
            self._keep_slots(~gone)

    def forward_frame(self, frame: np.ndarray, new_queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``track_frame``'s points and visibility."""
        tracks = self.track_frame(frame, new_queries)
        return tracks.points, tracks.visible

    def track_frame(self, frame: np.ndarray, new_queries: np.ndarray | None = None) -> FrameTracks:
        """Track one (H, W, 3) RGB frame (uint8 or float 0..255); ``new_queries`` (n, 2) start on it."""
        frame = self._check_frame(frame)
        height, width = self._frame_size
        if self._pending and self.frame_index == 0:
            try:
                self._check_inside(np.stack([xy for _, xy in self._pending]))
            except StreamInputError:
                self._pending = []
                raise
        if new_queries is not None:
            self.add_queries(new_queries)
        if self.frame_index == 0 and not self._slot_ids:
            self._start(support_grid(self.support_grid_size, height, width), [None] * self.support_grid_size ** 2)
        starting_points = np.zeros((0, 2), np.float32)
        if self._pending:
            starting_points = np.stack([xy for _, xy in self._pending]).astype(np.float32)
            self._start(starting_points, [query_id for query_id, _ in self._pending])
            self._pending = []
        self._step(frame)
        return self._results(starting_points)

    def fill_memory(self, features: np.ndarray) -> None:
        """Fill every memory slot of the queries started so far with ``features`` (N, M_i, D): the steady state
        of a long stream, for timing (as the Predictor's ``memory_filler``)."""
        memory = self._state["memory"]
        self._state["memory"] = np.broadcast_to(features.astype(np.float32), memory.shape[1:])[None].copy()
        self._state["memory_empty"] = np.zeros_like(self._state["memory_empty"])

    # ---------------------------------------------------------------------------------------------- helpers
    def _check_frame(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) -> (1, 3, H, W) float32; the size must stay the same within a stream."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise StreamInputError(f"a frame must be an (H, W, 3) RGB image, got shape {frame.shape}")
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if min(size) < 2:
            raise StreamInputError(f"a frame must be at least 2x2 pixels, got {size[1]}x{size[0]}")
        if self._frame_size is not None and size != self._frame_size:
            raise StreamInputError(f"frame size changed within a stream: {size} vs {self._frame_size}; call reset() "
                                   "first")
        pixels = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)
        if not np.isfinite(pixels).all():
            raise StreamInputError("frame contains NaN or infinite pixel values")
        if not self._warned_range and frame.dtype.kind == "f" and pixels.max() <= 1.0 and pixels.any():
            warnings.warn("frame values all lie in [0, 1], but the tracker expects 0..255: multiply by 255",
                          UserWarning, stacklevel=3)
            self._warned_range = True
        self._frame_size = size
        return pixels

    def _check_inside(self, points: np.ndarray) -> None:
        height, width = self._frame_size
        outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
        if outside.any() and not self.allow_outside_queries:
            raise StreamInputError(f"{int(outside.sum())} query point(s) lie outside the {width}x{height} frame "
                                   f"(x in [0, {width}], y in [0, {height}]); first ones (x, y): "
                                   f"{points[outside][:5].tolist()}")

    def _new_slots(self, count: int) -> dict[str, np.ndarray]:
        """State for ``count`` fresh slots, from the initial values in the JSON."""
        shapes = {"q_init": (1, count, self.dim), "memory": (1, count, self.memory_size, self.dim),
                  "memory_empty": (1, count, self.memory_size)}
        return {entry["input"]: np.full(shapes[entry["input"]], entry["initial"], NUMPY_DTYPES[entry["dtype"]])
                for entry in self.manifest["state"] if entry["input"] in shapes}

    def _ensure_slots(self) -> None:
        """Allocate the state of a stream, with no query slot yet."""
        if not self._state:
            self._state = {**self._new_slots(0), "frame_index": np.zeros(1, np.int64)}
            self._starting = np.zeros(0, bool)

    def _start(self, points: np.ndarray, ids: list[int | None]) -> None:
        """Append slots for the queries at ``points`` (frame pixels), starting on this frame (as the Predictor
        appends its queries, so the slots are in the same order as its columns)."""
        self._ensure_slots()
        height, width = self._frame_size
        coords = points.astype(np.float32) / np.array([width, height], np.float32)
        for name, value in self._new_slots(len(ids)).items():
            self._state[name] = np.concatenate([self._state[name], value], axis=1)
        self._coords = np.concatenate([self._coords, coords[None]], axis=1)
        self._active = np.concatenate([self._active, np.zeros(len(ids), bool)])
        self._starting = np.concatenate([self._starting, np.ones(len(ids), bool)])
        self._slot_ids = self._slot_ids + ids

    def _keep_slots(self, keep: np.ndarray) -> None:
        for name in ("q_init", "memory", "memory_empty"):
            self._state[name] = self._state[name][:, keep]
        self._coords = self._coords[:, keep]
        self._active, self._starting = self._active[keep], self._starting[keep]
        self._slot_ids = [query_id for query_id, kept in zip(self._slot_ids, keep) if kept]

    def _step(self, frame: np.ndarray) -> None:
        self._ensure_slots()
        active = self._active | self._starting
        if active.any():
            feeds = {"frame": frame, "coords": self._coords, "starting": self._starting[None],
                     "active": active[None], **self._state}
            outputs = self.session.run(feeds)
            for entry in self.manifest["state"]:
                self._state[entry["input"]] = outputs[entry["output"]]
            self._outputs = {name: outputs[name][0] for name in OUTPUT_NAMES[:3]}
        else:
            self._state["frame_index"] = self._state["frame_index"] + 1
            self._outputs = {"points": np.zeros((len(active), 2), np.float32),
                             "visibility": np.zeros(len(active), np.float32),
                             "confidence": np.zeros(len(active), np.float32)}
        self._active = active
        self._starting_now = self._starting
        self._starting = np.zeros_like(self._starting)
        self.frame_index += 1

    def _results(self, starting_points: np.ndarray) -> FrameTracks:
        """The user queries' results in frame pixels, in id order of starting (as the Predictor's)."""
        height, width = self._frame_size
        model_height, model_width = self.input_size
        scale = np.array([width / model_width, height / model_height], np.float32)
        user = [slot for slot, query_id in enumerate(self._slot_ids) if query_id is not None and self._active[slot]]
        user.sort(key=lambda slot: self._slot_ids[slot])
        points = self._outputs["points"][user] * scale
        probability = self._outputs["visibility"][user].copy()
        visible = probability >= self.delta_v
        confidence = self._outputs["confidence"][user].copy()
        if self.pin_query_points and len(starting_points):
            new = self._starting_now[user]
            points[new] = starting_points
            visible[new] = True
            confidence[new] = probability[new] = 1
        return FrameTracks([self._slot_ids[slot] for slot in user], points, visible, confidence, probability)
