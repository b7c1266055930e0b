"""PointOdyssey evaluation data, read as PIPs++'s full-sequence loader does (Track-On2's evaluator calls
``PointOdysseyDataset(root, "test", 256)`` and reads the frames itself from ``sample["seq"]``; the reference
repository does not ship the reader, so PIPs++'s ``pointodysseydataset_fullseq`` rules are followed).

Files::

    <root>/<dset>/<seq>/rgbs/rgb_%05d.jpg     frames
    <root>/<dset>/<seq>/anno.npz              trajs_2d (T, N, 2) pixels; visibs (T, N) and optionally valids (T, N)
                                              (older releases: visibilities (T, N) coded 0 occluded, 1 visible,
                                              2 invalid)

Filtering per sequence: inf/NaN coordinates are invalid; points within 1 px of the border or outside are invisible
and invalid (the image size is read from the first frame); a track must be visible and valid at frame 0 and in at
least 8 frames, and move less than 512 px between consecutive frames; coordinates are clamped to 32 px beyond the
image; then ``N`` tracks are taken evenly spaced (``linspace``) over the survivors.

Item (a dict, as the evaluator expects): ``seq`` str (the sequence folder), ``rgb_paths`` list[str], ``trajs``
float32 (T, N', 2), ``visibs`` float32 (T, N') and ``valids`` float32 (T, N') with N' = min(N, survivors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.errors import DatasetFormatError
from dataset.file_io import image_size, load_npz, require_dir

MIN_GOOD_FRAMES = 8
MAX_STEP = 512.0
CLAMP_MARGIN = 32.0


def read_annotations(path: Path, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """trajs (T, N, 2) float32, visibs and valids (T, N) float32 of an ``anno.npz``."""
    anno = load_npz(path)
    if "trajs_2d" not in anno or not ({"visibs", "visibilities"} & set(anno)):
        raise DatasetFormatError(path, f"needs 'trajs_2d' and 'visibs' (or 'visibilities'); found {sorted(anno)}")
    trajs = anno["trajs_2d"].astype(np.float32)
    if "visibs" in anno:
        visibs = anno["visibs"].astype(np.float32)
        valids = anno["valids"].astype(np.float32) if "valids" in anno else np.ones_like(visibs)
    else:
        coded = anno["visibilities"]
        visibs, valids = (coded == 1).astype(np.float32), (coded < 2).astype(np.float32)
    if trajs.ndim != 3 or trajs.shape[2] != 2 or visibs.shape != trajs.shape[:2] or valids.shape != visibs.shape:
        raise DatasetFormatError(path, f"shapes do not match: trajs_2d {trajs.shape}, visibs {visibs.shape}, valids {valids.shape}")
    if trajs.shape[0] != num_frames:
        raise DatasetFormatError(path, f"annotates {trajs.shape[0]} frames, but rgbs/ has {num_frames}")
    return trajs, visibs, valids


def filter_tracks(
    trajs: np.ndarray, visibs: np.ndarray, valids: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply PIPs++'s validity, visibility and motion rules; returns the surviving tracks."""
    trajs, visibs, valids = trajs.copy(), visibs.copy(), valids.copy()
    bad = ~np.isfinite(trajs).all(axis=-1)
    trajs[~np.isfinite(trajs)] = 0
    visibs[bad] = 0
    valids[bad] = 0
    x, y = trajs[..., 0], trajs[..., 1]
    outside = (x < 1) | (x > width - 2) | (y < 1) | (y > height - 2)
    visibs[outside] = 0
    valids[outside] = 0
    good = visibs * valids
    keep = (good[0] > 0) & (good.sum(axis=0) >= MIN_GOOD_FRAMES)
    if len(trajs) > 1:
        keep &= np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1).max(axis=0) < MAX_STEP
    trajs = np.clip(trajs[:, keep], -CLAMP_MARGIN, np.array([width + CLAMP_MARGIN, height + CLAMP_MARGIN]))
    return trajs.astype(np.float32), visibs[:, keep], valids[:, keep]


class PointOdysseyDataset(Dataset):
    """Full PointOdyssey sequences of one split with their filtered tracks."""

    def __init__(self, dataset_location: str | Path, dset: str = "test", N: int = 32) -> None:
        super().__init__()
        split_dir = require_dir(Path(dataset_location) / dset, "PointOdyssey split")
        self.N = N
        self.sequences = sorted(p for p in split_dir.iterdir() if p.is_dir())
        if not self.sequences:
            raise DatasetFormatError(split_dir, "contains no sequence folders")

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = self.sequences[index]
        rgb_dir = require_dir(seq / "rgbs", "PointOdyssey frames")
        num_frames = len([p for p in rgb_dir.iterdir() if p.suffix.lower() == ".jpg"])
        rgb_paths = [rgb_dir / f"rgb_{t:05d}.jpg" for t in range(num_frames)]
        missing = [p.name for p in rgb_paths if not p.is_file()]
        if num_frames == 0 or missing:
            raise DatasetFormatError(rgb_dir, f"frames must be rgb_00000.jpg onwards; missing {missing[:3] or 'all'}")
        height, width = image_size(rgb_paths[0])
        trajs, visibs, valids = filter_tracks(*read_annotations(seq / "anno.npz", num_frames), height, width)
        if trajs.shape[1] == 0:
            raise DatasetFormatError(seq / "anno.npz", "no track survives the filtering")
        picked = np.linspace(0, trajs.shape[1] - 1, min(self.N, trajs.shape[1])).astype(np.int64)
        return {
            "seq": str(seq),
            "rgb_paths": [str(p) for p in rgb_paths],
            "trajs": torch.from_numpy(np.ascontiguousarray(trajs[:, picked])),
            "visibs": torch.from_numpy(np.ascontiguousarray(visibs[:, picked])),
            "valids": torch.from_numpy(np.ascontiguousarray(valids[:, picked])),
        }
