"""TAP-Vid evaluation data: DAVIS, Kinetics, RGB-Stacking and RoboTAP.

Files (``data_root``), by ``dataset_type``:
    davis         one pickle: {video name: item}; items are taken in sorted name order
    kinetics      a folder of ``*_of_0010.pkl`` shards, each a list of items (read in sorted file order)
    rgb_stacking  one pickle: a list of items
    robotap       a folder of ``robotap_split*.pkl`` files, each {video name: item} (sorted file order)
An item is a dict with ``video`` (uint8 (T, H, W, 3), or a list of T JPEG/PNG byte strings), ``points`` (N, T, 2)
float (x, y) in [0, 1] and ``occluded`` (N, T) bool.

Item (``dataset[i]``), the reference's 4-tuple, after resizing frames to 256x256 (PIL Lanczos, as mediapy does) and
scaling points by 256 (so 1.0 maps to 256):
    rgbs          float32 (T, 3, 256, 256) in [0, 255]
    trajs         float32 (T, M, 2) (x, y) pixels
    visibles      bool (T, M)
    query_points  float32 (M, 3) as (t, y, x); the evaluator swaps to (t, x, y) for the model
``sample(i)`` gives the same as an ``EvalSample`` with queries as (t, x, y).
M depends on ``query_mode`` (see ``dataset.tapvid_queries``): ``first`` keeps each track visible at least once,
``strided`` repeats a track for every 5th frame where it is visible.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.eval_sample import EvalSample
from trackon2.dataset.file_io import decode_rgb, load_pickle, require_dir, require_keys
from trackon2.dataset.image_ops import resize_video_lanczos
from trackon2.dataset.tapvid_queries import QUERY_MODES, sample_queries

DATASET_TYPES = ("davis", "kinetics", "rgb_stacking", "robotap")
RESIZE = 256


def _check_item(item: Any, source: str) -> None:
    require_keys(item, ("video", "points", "occluded"), source)
    points, occluded = np.asarray(item["points"]), np.asarray(item["occluded"])
    if points.ndim != 3 or points.shape[2] != 2:
        raise DatasetFormatError(source, f"'points' must be (N, T, 2), got shape {points.shape}")
    if occluded.shape != points.shape[:2]:
        raise DatasetFormatError(source, f"'occluded' has shape {occluded.shape}, 'points' has {points.shape}")
    if len(item["video"]) != points.shape[1]:
        raise DatasetFormatError(source, f"{len(item['video'])} frames, but 'points' has {points.shape[1]}")


def _check_visible_points_finite(points: np.ndarray, occluded: np.ndarray, source: str) -> None:
    """Visible points must have finite coordinates (occluded ones are never scored, so they may be anything)."""
    bad = ~np.isfinite(points).all(axis=-1) & ~occluded
    if bad.any():
        track, frame = np.argwhere(bad)[0]
        raise DatasetFormatError(source, f"{int(bad.sum())} visible point(s) have NaN or infinite coordinates "
                                         f"(first: track {track}, frame {frame})")


def _shards(root: Path, pattern: str) -> list[Path]:
    paths = sorted(require_dir(root, "TAP-Vid").glob(pattern))
    if not paths:
        raise DatasetFormatError(root, f"no files matching {pattern!r}")
    return paths


def load_tapvid_items(data_root: str | Path, dataset_type: str,
                      check_items: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(source label, item) pairs of a TAP-Vid dataset; each item checked for structure unless ``check_items`` is
    False (then ``TAPVid`` checks it when it is read)."""
    root = Path(data_root)
    items: list[tuple[str, Any]] = []
    if dataset_type in ("davis", "rgb_stacking") and root.is_dir():
        raise DatasetFormatError(root, f"TAP-Vid {dataset_type} is one pickle file (such as tapvid_{dataset_type}.pkl), "
                                       "but this is a folder")
    if dataset_type == "davis":
        data = load_pickle(root)
        if not isinstance(data, dict):
            raise DatasetFormatError(root, f"expected a dict of videos, found {type(data).__name__}")
        items = [(f"{root}[{name!r}]", data[name]) for name in sorted(data)]
    elif dataset_type == "rgb_stacking":
        data = load_pickle(root)
        if not isinstance(data, list):
            raise DatasetFormatError(root, f"expected a list of videos, found {type(data).__name__}")
        items = [(f"{root}[{i}]", item) for i, item in enumerate(data)]
    elif dataset_type == "kinetics":
        for path in _shards(root, "*_of_0010.pkl"):
            data = load_pickle(path)
            if not isinstance(data, list):
                raise DatasetFormatError(path, f"expected a list of videos, found {type(data).__name__}")
            items += [(f"{path}[{i}]", item) for i, item in enumerate(data)]
    elif dataset_type == "robotap":
        for path in _shards(root, "robotap_split*.pkl"):
            data = load_pickle(path)
            if not isinstance(data, dict):
                raise DatasetFormatError(path, f"expected a dict of videos, found {type(data).__name__}")
            items += [(f"{path}[{name!r}]", item) for name, item in data.items()]
    else:
        raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got {dataset_type!r}")
    if check_items:
        for source, item in items:
            _check_item(item, source)
    return items


def decode_video(video: Any, source: str) -> np.ndarray:
    """uint8 (T, H, W, 3) frames from an array or a list of encoded images."""
    if len(video) == 0:
        raise DatasetFormatError(source, "the video has no frames")
    if len(video) and isinstance(video[0], bytes):
        frames = [decode_rgb(frame, f"{source} frame {t}") for t, frame in enumerate(video)]
        if any(frame.shape != frames[0].shape for frame in frames):
            raise DatasetFormatError(source, "frames differ in size")
        video = np.stack(frames)
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise DatasetFormatError(source, f"'video' must be (T, H, W, 3), got shape {video.shape}")
    return video.astype(np.uint8, copy=False)


class TAPVid(Dataset):
    """A TAP-Vid dataset; ``data_root`` / ``dataset_type`` default to ``args.tapvid_root`` / ``args.eval_dataset``."""

    def __init__(
        self,
        args: argparse.Namespace | None = None,
        data_root: str | Path | None = None,
        dataset_type: str | None = None,
        query_mode: str = "first",
        resize_to_256: bool = True,
        check_items: bool = True,
    ) -> None:
        """``check_items`` False defers each video's structure checks (keys, array shapes, frame count) to when it
        is read, so that one malformed video can be skipped by the evaluation instead of stopping the whole set."""
        super().__init__()
        data_root = data_root if data_root is not None else getattr(args, "tapvid_root", None)
        self.dataset_type = dataset_type if dataset_type is not None else getattr(args, "eval_dataset", None)
        if data_root is None or self.dataset_type is None:
            raise ValueError("TAPVid needs data_root and dataset_type, directly or as args.tapvid_root/eval_dataset")
        if self.dataset_type not in DATASET_TYPES:
            raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got {self.dataset_type!r}")
        if query_mode not in QUERY_MODES:
            raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
        self.query_mode = query_mode
        self.resize_to_256 = resize_to_256
        self.items = load_tapvid_items(data_root, self.dataset_type, check_items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        source, item = self.items[index]
        _check_item(item, source)
        frames = decode_video(item["video"], source)
        points = np.array(item["points"], dtype=np.float32)
        _check_visible_points_finite(points, np.asarray(item["occluded"], dtype=bool), source)
        if self.resize_to_256:
            frames = resize_video_lanczos(frames, RESIZE, RESIZE)
            points *= np.float32(RESIZE)
        else:
            points *= np.array([frames.shape[2], frames.shape[1]], dtype=np.float32)
        queries = sample_queries(np.asarray(item["occluded"], dtype=bool), points, self.query_mode)
        rgbs = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        trajs = torch.from_numpy(queries["target_points"]).permute(1, 0, 2).float()
        visibles = torch.from_numpy(~queries["occluded"]).permute(1, 0)
        return rgbs, trajs, visibles, torch.from_numpy(queries["query_points"])

    def name(self, index: int) -> str:
        """The video's source entry, such as ``tapvid_davis.pkl['bear']``."""
        return Path(self.items[index][0]).name

    def sample(self, index: int) -> EvalSample:
        rgbs, trajs, visibles, query_points = self[index]
        return EvalSample(rgbs, query_points[:, [0, 2, 1]], trajs, visibles, torch.ones_like(visibles),
                          self.name(index))
