"""PointOdyssey evaluation data, read rule by rule as the reference's ``dataset/point_odyssey.py`` (Track-On2, after
PIPs++'s full-sequence loader) and its frames decoded as the reference's ``evaluate_po`` does. The evaluation builds
``PointOdysseyDataset(split_folder, "test", 256)``.

Files::

    <split>/<seq>/rgbs/rgb_%05d.jpg     frames (their count is the number of entries in rgbs/)
    <split>/<seq>/anno.npz              trajs_2d (T', N, 2) pixels, visibs (T', N) coded 0 occluded, 1 visible,
                                        2 invalid; the first T frames are used, other keys (valids, ...) are ignored

``dataset_location`` is the split folder, as in the reference, or the folder holding ``<dset>/``. Sequences are
the sub-folders not starting with '.', sorted as the reference's ``glob("*/")`` strings (name + '/').

Track rules, in the reference's order: inf/NaN coordinates become 0 and make the point invisible and invalid;
points within 1 px of the border of a 540x960 frame (the size the reference assumes, whatever the JPEGs' size) or
outside it are invisible and invalid; a track must be visible and valid at frame 0 and in at least 8 frames, and
move less than 512 px between consecutive frames; coordinates are clamped to 32 px beyond the 540x960 frame; then
``N`` tracks are taken at ``linspace(0, survivors - 1, N)`` (truncated) over the survivors.

Item (a dict, as the evaluator expects): ``seq`` str (the sequence folder), ``rgb_paths`` list[str], ``trajs``
float64 (T, N', 2) (the reference's clamp promotes to float64; the values are float32 ones), ``visibs`` float32
(T, N') and ``valids`` float32 (T, N') with N' = min(N, survivors). A sequence with no surviving track raises
``DatasetFormatError`` (the reference skips it). ``sample(i)`` is the item as an ``EvalSample``: the frames
decoded and resized to 384x512 as the reference's ``evaluate_po``, the tracks scaled to match and queries at each
track's first visible frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.eval_sample import EvalSample, first_visible_queries
from trackon2.dataset.file_io import load_npz, require_dir

ANNOTATION_SIZE = (540, 960)  # (H, W) the reference assumes for the border and clamp rules
BORDER = 1.0
MIN_GOOD_FRAMES = 8
MAX_STEP = 512.0
CLAMP_MARGIN = 32.0
VISIBLE_CODE, INVALID_CODE = 1, 2
ANNOTATION_KEYS = ("trajs_2d", "visibs")
EVAL_SIZE = (384, 512)  # (H, W) the reference's evaluate_po resizes the frames to


def resolve_split_dir(dataset_location: str | Path, dset: str) -> Path:
    """The split folder: ``dataset_location/dset`` when that exists and is no sequence, else ``dataset_location``."""
    location = require_dir(dataset_location, "PointOdyssey")
    candidate = location / dset
    if candidate.is_dir() and not (candidate / "anno.npz").is_file():
        return candidate
    return location


def check_sequence(folder: Path) -> None:
    if not (folder / "anno.npz").is_file() or not (folder / "rgbs").is_dir():
        raise DatasetFormatError(folder, "is not a PointOdyssey sequence (needs anno.npz and rgbs/)")


def list_sequences(split_dir: Path, check_items: bool = True) -> list[Path]:
    """Sequence folders of ``split_dir`` (not hidden), in the order of the reference's sorted ``glob("*/")``.

    Each must hold a sequence; with ``check_items`` False only one of them must (the others fail when read)."""
    folders = sorted((p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name + "/")
    if not folders:
        raise DatasetFormatError(split_dir, "contains no sequence folders (pass the split folder or its parent)")
    for position, folder in enumerate(folders):
        try:
            check_sequence(folder)
            if not check_items:
                break
        except DatasetFormatError:
            if check_items or position == len(folders) - 1:
                raise
    return folders


def frame_paths(seq: Path) -> list[Path]:
    """``rgbs/rgb_%05d.jpg`` for as many frames as ``rgbs/`` has entries; each must exist."""
    rgb_dir = seq / "rgbs"
    paths = [rgb_dir / f"rgb_{t:05d}.jpg" for t in range(len(os.listdir(rgb_dir)))]
    missing = [p.name for p in paths if not p.is_file()]
    if not paths or missing:
        raise DatasetFormatError(rgb_dir, f"frames must be rgb_00000.jpg onwards, one per entry; missing {missing[:3] or 'all'}")
    return paths


def read_annotations(path: Path, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """trajs (T, N, 2) float32, visibs and valids (T, N) float32 of the first ``num_frames`` of an ``anno.npz``,
    decoded from the visibility codes: visible where code == 1, valid where code < 2."""
    anno = load_npz(path, ANNOTATION_KEYS)
    missing = [key for key in ANNOTATION_KEYS if key not in anno]
    if missing:
        raise DatasetFormatError(path, f"needs 'trajs_2d' and 'visibs'; missing {missing}")
    trajs, codes = anno["trajs_2d"], anno["visibs"]
    if trajs.ndim != 3 or trajs.shape[2] != 2 or codes.shape != trajs.shape[:2]:
        raise DatasetFormatError(path, f"shapes do not match: trajs_2d {trajs.shape}, visibs {codes.shape}")
    if trajs.shape[0] < num_frames:
        raise DatasetFormatError(path, f"annotates {trajs.shape[0]} frames, but rgbs/ has {num_frames}")
    if num_frames < 2:
        raise DatasetFormatError(path, "needs at least 2 frames (the motion rule compares consecutive frames)")
    codes = codes[:num_frames].astype(np.float32)
    visibs = (codes == VISIBLE_CODE).astype(np.float32)
    valids = (codes < INVALID_CODE).astype(np.float32)
    return trajs[:num_frames].astype(np.float32), visibs, valids


def filter_tracks(
    trajs: np.ndarray, visibs: np.ndarray, valids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the reference's validity, border, frame-0, frame-count and motion rules; returns the survivors,
    clamped, with trajs as float64."""
    trajs, visibs, valids = trajs.copy(), visibs.copy(), valids.copy()
    finite = np.isfinite(trajs)
    trajs[~finite] = 0
    bad = ~finite.all(axis=-1)
    visibs[bad] = 0
    valids[bad] = 0
    height, width = ANNOTATION_SIZE
    x, y = trajs[..., 0], trajs[..., 1]
    outside = (x < BORDER) | (x > width - 1 - BORDER) | (y < BORDER) | (y > height - 1 - BORDER)
    visibs[outside] = 0
    valids[outside] = 0
    good = visibs * valids
    keep = (good[0] > 0) & (good.sum(axis=0) >= MIN_GOOD_FRAMES)
    keep &= np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1).max(axis=0) < MAX_STEP
    low = np.array([-CLAMP_MARGIN, -CLAMP_MARGIN])
    high = np.array([width + CLAMP_MARGIN, height + CLAMP_MARGIN])
    return np.minimum(np.maximum(trajs[:, keep], low), high), visibs[:, keep], valids[:, keep]


def read_frame_bgr(path: str | Path) -> np.ndarray:
    """A frame decoded by OpenCV's ``imread`` (uint8 (H, W, 3), BGR)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(path, "OpenCV cannot read this image")
    return image


def load_resized_video(rgb_paths: Sequence[str | Path], size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """(video (1, T, 3, H, W) float32 RGB in [0, 255], (H, W) of the first frame as decoded).

    As the reference: ``cv2.imread``, BGR -> RGB, ``cv2.resize`` to ``size`` with ``INTER_LINEAR`` on the uint8
    frame (OpenCV's fixed-point arithmetic, which a float bilinear resize does not reproduce), then float.
    """
    height, width = size
    video = np.empty((len(rgb_paths), height, width, 3), dtype=np.uint8)
    original_size = (0, 0)
    for t, path in enumerate(rgb_paths):
        rgb = read_frame_bgr(path)[:, :, ::-1]
        if t == 0:
            original_size = rgb.shape[:2]
        video[t] = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(video).permute(0, 3, 1, 2).float()[None], original_size


class PointOdysseyDataset(Dataset):
    """Full PointOdyssey sequences of one split with their filtered tracks."""

    def __init__(self, dataset_location: str | Path, dset: str = "test", N: int = 32, check_items: bool = True) -> None:
        """``check_items`` False defers each sequence's checks to when it is read, so that one broken sequence
        can be skipped by the evaluation instead of stopping the whole set."""
        super().__init__()
        if N < 1:
            raise ValueError(f"N must be at least 1, got {N}")
        self.N = N
        self.sequences = list_sequences(resolve_split_dir(dataset_location, dset), check_items)
        self._rgb_paths = {i: frame_paths(seq) for i, seq in enumerate(self.sequences)} if check_items else {}

    def __len__(self) -> int:
        return len(self.sequences)

    def rgb_paths(self, index: int) -> list[Path]:
        """The frame files of sequence ``index`` (checked on first use)."""
        if index not in self._rgb_paths:
            check_sequence(self.sequences[index])
            self._rgb_paths[index] = frame_paths(self.sequences[index])
        return self._rgb_paths[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq, rgb_paths = self.sequences[index], self.rgb_paths(index)
        trajs, visibs, valids = filter_tracks(*read_annotations(seq / "anno.npz", len(rgb_paths)))
        if trajs.shape[1] == 0:
            raise DatasetFormatError(seq / "anno.npz", "no track survives the filtering")
        picked = np.linspace(0, trajs.shape[1] - 1, min(self.N, trajs.shape[1])).astype(np.int32)
        return {
            "seq": str(seq),
            "rgb_paths": [str(p) for p in rgb_paths],
            "trajs": torch.from_numpy(np.ascontiguousarray(trajs[:, picked])),
            "visibs": torch.from_numpy(np.ascontiguousarray(visibs[:, picked])),
            "valids": torch.from_numpy(np.ascontiguousarray(valids[:, picked])),
        }

    def name(self, index: int) -> str:
        """The sequence folder's name."""
        return self.sequences[index].name

    def sample(self, index: int) -> EvalSample:
        item = self[index]
        video, (original_height, original_width) = load_resized_video(item["rgb_paths"], EVAL_SIZE)
        height, width = EVAL_SIZE
        scale = torch.tensor([width / original_width, height / original_height], dtype=torch.float32)
        tracks = item["trajs"].float() * scale
        visible, valid = item["visibs"] > 0, item["valids"] > 0
        return EvalSample(video[0], first_visible_queries(tracks, visible), tracks, visible, valid, self.name(index))
