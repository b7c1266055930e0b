"""Dynamic Replica evaluation data, read as CoTracker's ``DynamicReplicaDataset`` does (Track-On2's evaluator calls
``DynamicReplicaDataset(root, sample_len=300, only_first_n_samples=1)``; the reference repository does not ship the
reader, so CoTracker's is followed).

Files::

    <root>/<split>/frame_annotations_<split>.jgz   gzipped JSON list of frame annotations: sequence_name,
                                                   frame_number, camera_name, image {path, size [H, W]},
                                                   trajectories {path} (relative to <root>/<split>)
    <root>/<split>/<trajectories path>.pth         per frame: img (H, W, 3) uint8, traj_2d (N, >=2) pixels,
                                                   verts_inds_vis (N,) bool

Only the left camera is used. A sequence is cut into samples of ``sample_len`` frames (all frames when -1); at most
``only_first_n_samples`` per sequence. Per sample: ``traj_per_sample`` tracks at random (seeded by ``seed`` and the
index), an optional centre crop to ``crop_size``, points outside ``[0, W-1] x [0, H-1]`` marked invisible, and only
tracks visible in more than 10 frames kept.

Item, the reference's 3-tuple: video float32 (T, 3, H, W) in [0, 255], trajectory float32 (T, N, 2) (x, y) pixels,
visibility bool (T, N).
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

from dataset.errors import DatasetFormatError
from dataset.file_io import require_dir, require_file, require_keys

MIN_VISIBLE_FRAMES = 10


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
        require_keys(frame, ("sequence_name", "frame_number", "camera_name"), f"{path} entry {i}")
    return frames


def read_trajectory_frame(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(img (H, W, 3) uint8, traj_2d (N, 2), visible (N,)) of one per-frame ``.pth`` file."""
    require_file(path, "trajectory")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many unrelated types for corrupt files
        raise DatasetFormatError(path, f"not a readable torch file ({type(exc).__name__}: {exc})") from None
    require_keys(data, ("img", "traj_2d", "verts_inds_vis"), path)
    img = np.asarray(data["img"])
    traj = np.asarray(data["traj_2d"], dtype=np.float32)
    visible = np.asarray(data["verts_inds_vis"]).astype(bool)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DatasetFormatError(path, f"'img' must be (H, W, 3), got shape {img.shape}")
    if traj.ndim != 2 or traj.shape[1] < 2 or visible.shape != traj.shape[:1]:
        raise DatasetFormatError(path, f"'traj_2d' {traj.shape} and 'verts_inds_vis' {visible.shape} do not match")
    return img.astype(np.uint8, copy=False), traj[:, :2], visible


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
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.split_dir = require_dir(Path(root) / split, "Dynamic Replica split")
        self.traj_per_sample = traj_per_sample
        self.crop_size = crop_size
        self.seed = seed
        path = self.split_dir / f"frame_annotations_{split}.jgz"
        by_sequence: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for frame in read_frame_annotations(path):
            if frame["camera_name"] == "left":
                if not isinstance(frame.get("trajectories"), dict) or "path" not in frame["trajectories"]:
                    raise DatasetFormatError(path, f"left frame {frame['frame_number']} of {frame['sequence_name']!r} has no trajectories path")
                by_sequence[frame["sequence_name"]].append(frame)
        self.sample_list: list[list[dict[str, Any]]] = []
        for name in by_sequence:
            frames = sorted(by_sequence[name], key=lambda f: f["frame_number"])
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
        crop_h, crop_w = self.crop_size
        height, width = video.shape[1:3]
        y0 = 0 if crop_h >= height else (height - crop_h) // 2
        x0 = 0 if crop_w >= width else (width - crop_w) // 2
        trajs = trajs - np.array([x0, y0], dtype=np.float32)
        return video[:, y0 : y0 + crop_h, x0 : x0 + crop_w], trajs

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = [read_trajectory_frame(self.split_dir / f["trajectories"]["path"]) for f in self.sample_list[index]]
        name = self.sample_list[index][0]["sequence_name"]
        if any(img.shape != frames[0][0].shape or traj.shape != frames[0][1].shape for img, traj, _ in frames):
            raise DatasetFormatError(self.split_dir / name, "frames differ in image size or number of trajectories")
        video = np.stack([img for img, _, _ in frames])
        trajs = np.stack([traj for _, traj, _ in frames])
        visible = np.stack([vis for _, _, vis in frames])

        generator = torch.Generator().manual_seed(self.seed + index)
        picked = torch.randperm(trajs.shape[1], generator=generator)[: self.traj_per_sample].numpy()
        trajs, visible = trajs[:, picked], visible[:, picked]
        if self.crop_size is not None:
            video, trajs = self._crop(video, trajs)
        height, width = video.shape[1:3]
        x, y = trajs[..., 0], trajs[..., 1]
        visible = visible & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        keep = visible.sum(axis=0) > MIN_VISIBLE_FRAMES
        rgbs = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
        return rgbs, torch.from_numpy(np.ascontiguousarray(trajs[:, keep])), torch.from_numpy(visible[:, keep])
