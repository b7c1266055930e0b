"""Dynamic Replica evaluation data, read rule by rule as the reference's ``dataset/dynamic_replica.py`` (Track-On2,
itself an older CoTracker reader). The evaluation builds ``DynamicReplicaDataset(root, sample_len=300,
only_first_n_samples=1)``: the first 300 left-camera frames of every sequence.

Files::

    <root>/<split>/frame_annotations_<split>.jgz   gzipped JSON list of frame annotations: sequence_name,
                                                   camera_name, image {size [H, W]}, trajectories {path}
                                                   (relative to <root>/<split>)
    <root>/<split>/<trajectories path>             per frame (torch file): img (H, W, 3) uint8, traj_2d (N, >=2)
                                                   pixels, verts_inds_vis (N,) bool

Rules, in the reference's order:

* only ``camera_name == "left"`` frames; sequences in the order of their first frame in the file, frames in file
  order (not sorted by ``frame_number``);
* a sequence is cut into consecutive samples of ``sample_len`` frames (all frames when -1), at most
  ``only_first_n_samples`` per sequence;
* tracks are subsampled uniformly, not at random: with N >= ``traj_per_sample`` tracks, every
  ``N // traj_per_sample``-th track from track 0, the first ``traj_per_sample`` of them; with fewer, all N;
* optional centre crop to ``crop_size``;
* a point is invisible outside ``[0, W-1] x [0, H-1]``, with (H, W) the annotation's ``image.size`` (the crop size
  when cropping);
* tracks visible in more than 10 frames are kept, in their order.

Item, the reference's 3-tuple: video float32 (T, 3, H, W) in [0, 255], trajectory (T, N, 2) (x, y) pixels in the
file's dtype, visibility (T, N) in the file's dtype. ``sample(i)`` is the item as an ``EvalSample`` with every
track queried at frame 0 (as the reference's ``evaluate_dr``; such a query may lie outside the frame).
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.eval_sample import EvalSample
from trackon2.dataset.file_io import require_dir, require_file, require_keys

MIN_VISIBLE_FRAMES = 10  # a track must be visible in more than this many frames


def read_frame_annotations(path: Path) -> list[dict[str, Any]]:
    """The JSON list of frame annotations of a ``.jgz`` file."""
    require_file(path, "frame annotations")
    try:
        with gzip.open(path, "rt", encoding="utf8") as handle:
            frames = json.load(handle)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(path, f"not a gzipped JSON file ({exc})") from None
    if not isinstance(frames, list):
        raise DatasetFormatError(path, f"expected a JSON list of frame annotations, found {type(frames).__name__}")
    for i, frame in enumerate(frames):
        require_keys(frame, ("sequence_name",), f"{path} entry {i}")
    return frames


def check_left_frame(frame: dict[str, Any], source: Path) -> None:
    """A left-camera annotation needs ``trajectories.path`` and ``image.size`` ([H, W])."""
    where = f"left frame {frame.get('frame_number')} of {frame['sequence_name']!r}"
    if not isinstance(frame.get("trajectories"), dict) or "path" not in frame["trajectories"]:
        raise DatasetFormatError(source, f"{where} has no trajectories path")
    image = frame.get("image")
    size = image.get("size") if isinstance(image, dict) else None
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise DatasetFormatError(source, f"{where} has no image size [H, W]")


def read_trajectory_frame(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(img (H, W, 3) uint8, traj_2d (N, 2), verts_inds_vis (N,)) of one per-frame torch file."""
    require_file(path, "trajectory")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many unrelated types for corrupt files
        raise DatasetFormatError(path, f"not a readable torch file ({type(exc).__name__}: {exc})") from None
    require_keys(data, ("img", "traj_2d", "verts_inds_vis"), path)
    img, traj, visible = (np.asarray(data[key]) for key in ("img", "traj_2d", "verts_inds_vis"))
    if img.ndim != 3 or img.shape[2] != 3:
        raise DatasetFormatError(path, f"'img' must be (H, W, 3), got shape {img.shape}")
    if traj.ndim != 2 or traj.shape[1] < 2 or not np.issubdtype(traj.dtype, np.floating):
        raise DatasetFormatError(path, f"'traj_2d' must be floating (N, >=2), got {traj.dtype} {traj.shape}")
    if visible.shape != traj.shape[:1]:
        raise DatasetFormatError(path, f"'traj_2d' {traj.shape} and 'verts_inds_vis' {visible.shape} do not match")
    return img.astype(np.uint8, copy=False), traj[:, :2], visible


def uniform_track_indices(num_tracks: int, traj_per_sample: int) -> np.ndarray:
    """Every ``num_tracks // traj_per_sample``-th track from 0, at most ``traj_per_sample``; all with fewer."""
    if num_tracks >= traj_per_sample:
        return np.arange(0, num_tracks, num_tracks // traj_per_sample)[:traj_per_sample]
    return np.arange(num_tracks)


def invisible_outside(visibility: np.ndarray, trajs: np.ndarray, height: int, width: int) -> np.ndarray:
    """``visibility`` with points outside ``[0, width-1] x [0, height-1]`` set to not visible."""
    x, y = trajs[..., 0], trajs[..., 1]
    outside = (x > width - 1) | (x < 0) | (y > height - 1) | (y < 0)
    visibility = visibility.copy()
    visibility[outside] = False
    return visibility


class DynamicReplicaDataset(Dataset):
    """Samples of left-camera Dynamic Replica sequences with their 2D trajectories."""

    def __init__(
        self,
        root: str | Path,
        split: str = "valid",
        traj_per_sample: int = 256,
        crop_size: tuple[int, int] | None = None,
        sample_len: int = -1,
        only_first_n_samples: int = -1,
        check_items: bool = True,
    ) -> None:
        """``check_items`` False defers each sequence's annotation checks to when it is read, so that one broken
        sequence can be skipped by the evaluation instead of stopping the whole set."""
        super().__init__()
        if traj_per_sample < 1:
            raise ValueError(f"traj_per_sample must be at least 1, got {traj_per_sample}")
        self.split_dir = require_dir(Path(root) / split, "Dynamic Replica split")
        self.traj_per_sample = traj_per_sample
        self.crop_size = crop_size
        self.annotation_path = path = self.split_dir / f"frame_annotations_{split}.jgz"
        by_sequence: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for frame in read_frame_annotations(path):
            if frame.get("camera_name") == "left":  # a missing camera_name is not the left camera
                if check_items:
                    check_left_frame(frame, path)
                by_sequence[frame["sequence_name"]].append(frame)
        self.sample_list: list[list[dict[str, Any]]] = []
        for frames in by_sequence.values():
            step = sample_len if sample_len > 0 else len(frames)
            starts = list(range(0, len(frames), step))
            if only_first_n_samples > 0:
                starts = starts[:only_first_n_samples]
            self.sample_list += [frames[s : s + step] for s in starts]
        if not self.sample_list:
            raise DatasetFormatError(path, "no left-camera frames")

    def __len__(self) -> int:
        return len(self.sample_list)

    def _crop(self, video: np.ndarray, trajs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre crop to ``crop_size`` (no crop along a side not larger than the crop)."""
        crop_h, crop_w = self.crop_size
        height, width = video.shape[1:3]
        y0 = 0 if crop_h >= height else (height - crop_h) // 2
        x0 = 0 if crop_w >= width else (width - crop_w) // 2
        trajs = trajs.copy()
        trajs[..., 0] -= x0
        trajs[..., 1] -= y0
        return video[:, y0 : y0 + crop_h, x0 : x0 + crop_w], trajs

    def _read_sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stacked (video (T, H, W, 3), trajs (T, N, 2), visibility (T, N)) of sample ``index``."""
        sample = self.sample_list[index]
        for frame in sample:
            check_left_frame(frame, self.annotation_path)
        height, width = sample[0]["image"]["size"]
        frames = [read_trajectory_frame(self.split_dir / f["trajectories"]["path"]) for f in sample]
        source = self.split_dir / sample[0]["sequence_name"]
        for img, traj, _ in frames:
            if img.shape != (height, width, 3):
                raise DatasetFormatError(source, f"an image is {img.shape[:2]}, the annotation says {(height, width)}")
            if traj.shape != frames[0][1].shape:
                raise DatasetFormatError(source, "frames differ in their number of trajectories")
        video = np.stack([img for img, _, _ in frames])
        return video, np.stack([traj for _, traj, _ in frames]), np.stack([vis for _, _, vis in frames])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        video, trajs, visibility = self._read_sample(index)
        picked = uniform_track_indices(trajs.shape[1], self.traj_per_sample)
        trajs, visibility = trajs[:, picked], visibility[:, picked]
        height, width = self.sample_list[index][0]["image"]["size"]
        if self.crop_size is not None:
            video, trajs = self._crop(video, trajs)
            height, width = self.crop_size
        visibility = invisible_outside(visibility, trajs, height, width)
        keep = visibility.sum(axis=0) > MIN_VISIBLE_FRAMES
        rgbs = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
        return rgbs, torch.from_numpy(np.ascontiguousarray(trajs[:, keep])), torch.from_numpy(visibility[:, keep])

    def name(self, index: int) -> str:
        """The sequence's name."""
        return str(self.sample_list[index][0]["sequence_name"])

    def sample(self, index: int) -> EvalSample:
        video, tracks, visibility = self[index]
        tracks = tracks.float()
        queries = torch.cat([torch.zeros_like(tracks[0, :, :1]), tracks[0]], dim=1)
        visible = visibility.bool()
        return EvalSample(video, queries, tracks, visible, torch.ones_like(visible), self.name(index))
