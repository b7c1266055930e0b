"""EgoPoints evaluation data, read as the reference's ``dataset/ego_points.py`` (Track-On-R) reads it.

Files::

    <root>/<seq>/annot.npz     trajs_2d (T, N, 2) pixels of the original frames; valids, visibs, vis_valids,
                               out_of_view, occluded (T, N) flags
    <root>/<seq>/rgbs/*.jpg    the T frames, in file-name order

Sequences are the folders holding an ``annot.npz``, sorted as the reference's sorted ``glob("*/annot.npz")``
strings (hidden folders are not listed). Frames are decoded by OpenCV, turned from BGR to RGB and resized to
384x512 with ``INTER_LINEAR``; ``trajs_2d`` is scaled by (512 / W, 384 / H) of the first frame as decoded. Every
flag array is kept as float32 values, as the reference's metric reads them. The queries are every track's
position at frame 0, as the reference's ``evaluate_ego_points`` takes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.eval_sample import EvalSample
from trackon2.dataset.file_io import load_npz, require_dir
from trackon2.dataset.point_odyssey import load_resized_video

EVAL_SIZE = (384, 512)  # (H, W) the reference resizes the frames to
ANNOTATION_FILE = "annot.npz"
FLAG_KEYS = ("valids", "visibs", "vis_valids", "out_of_view", "occluded")
ANNOTATION_KEYS = ("trajs_2d", *FLAG_KEYS)


def list_sequences(root: Path) -> list[Path]:
    """Folders of ``root`` holding an ``annot.npz``, in the order of the reference's sorted glob strings."""
    folders = [p for p in root.iterdir()
               if p.is_dir() and not p.name.startswith(".") and (p / ANNOTATION_FILE).is_file()]
    if not folders:
        raise DatasetFormatError(root, f"contains no sequence folder with an {ANNOTATION_FILE} (pass the EgoPoints "
                                       "folder holding the sequences)")
    return sorted(folders, key=lambda p: f"{p.name}/{ANNOTATION_FILE}")


def frame_paths(seq: Path) -> list[Path]:
    """``rgbs/*.jpg`` of a sequence (not hidden), sorted by name."""
    rgb_dir = seq / "rgbs"
    paths = sorted((p for p in rgb_dir.glob("*.jpg") if not p.name.startswith(".")), key=lambda p: p.name) \
        if rgb_dir.is_dir() else []
    if not paths:
        raise DatasetFormatError(rgb_dir, "holds no .jpg frame")
    return paths


def read_annotations(path: Path, num_frames: int) -> dict[str, np.ndarray]:
    """trajs_2d (T, N, 2) and every flag (T, N) of an ``annot.npz`` as float32, checked against ``num_frames``."""
    annotations = load_npz(path, ANNOTATION_KEYS)
    missing = [key for key in ANNOTATION_KEYS if key not in annotations]
    if missing:
        raise DatasetFormatError(path, f"missing key(s) {missing}; EgoPoints annotations need {list(ANNOTATION_KEYS)}")
    trajs = annotations["trajs_2d"]
    if trajs.ndim != 3 or trajs.shape[2] != 2:
        raise DatasetFormatError(path, f"trajs_2d must be (T, N, 2), got {trajs.shape}")
    wrong = {key: annotations[key].shape for key in FLAG_KEYS if annotations[key].shape != trajs.shape[:2]}
    if wrong:
        raise DatasetFormatError(path, f"flags must be (T, N) = {trajs.shape[:2]} as trajs_2d; got {wrong}")
    if trajs.shape[0] != num_frames:
        raise DatasetFormatError(path, f"annotates {trajs.shape[0]} frames, but rgbs/ holds {num_frames} .jpg frames")
    if trajs.shape[1] == 0:
        raise DatasetFormatError(path, "annotates no track")
    return {key: value.astype(np.float32) for key, value in annotations.items()}


class EgoPointsDataset(Dataset):
    """The EgoPoints sequences of ``dataset_location``, each with its frames at ``image_size``."""

    def __init__(self, dataset_location: str | Path, image_size: tuple[int, int] = EVAL_SIZE) -> None:
        super().__init__()
        self.image_size = tuple(image_size)
        self.sequences = list_sequences(require_dir(dataset_location, "EgoPoints"))

    def __len__(self) -> int:
        return len(self.sequences)

    def name(self, index: int) -> str:
        """The sequence folder's name."""
        return self.sequences[index].name

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The reference's item: ``video`` float32 (T, 3, H, W), ``trajectory`` (T, N, 2) scaled to it, the flags
        ``visibility`` (from visibs), ``valids``, ``vis_valids``, ``out_of_view``, ``occluded`` (T, N) float32 and
        ``seq``."""
        seq = self.sequences[index]
        rgb_paths = frame_paths(seq)
        annotations = read_annotations(seq / ANNOTATION_FILE, len(rgb_paths))
        video, (original_height, original_width) = load_resized_video(rgb_paths, self.image_size)
        height, width = self.image_size
        trajectory = torch.from_numpy(annotations["trajs_2d"])
        trajectory[..., 0] *= width / original_width  # a Python float times float32, as the reference
        trajectory[..., 1] *= height / original_height
        flags = {key: torch.from_numpy(annotations[key]) for key in FLAG_KEYS if key != "visibs"}
        return {"video": video[0], "trajectory": trajectory, "visibility": torch.from_numpy(annotations["visibs"]),
                **flags, "seq": seq.name}

    def sample(self, index: int) -> EvalSample:
        """The item as an ``EvalSample``: queries at frame 0, every flag in ``annotations``."""
        item = self[index]
        tracks = item["trajectory"]
        queries = torch.cat([torch.zeros_like(tracks[0, :, :1]), tracks[0]], dim=1)
        annotations = {key: item[key] for key in ("visibility", *FLAG_KEYS) if key in item}
        return EvalSample(item["video"], queries, tracks, item["visibility"] > 0, item["valids"] > 0,
                          self.name(index), annotations)
