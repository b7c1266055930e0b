"""Kubric MOVi-F training data (the CoTracker3 Kubric release) with the reference's sampling and augmentations.

On disk, ``movi_f_root`` holds one folder per sample::

    <root>/<name>/frames/*.png          RGB frames, sorted by file name
    <root>/<name>/<name>.npy            pickled dict: "coords" (N, T, 2) float pixels (x, y),
                                        "visibility" (N, T) bool -- despite its name, True means OCCLUDED

Item (``dataset[i]``), the reference's 4-tuple:
    rgbs          float32 (T, 3, H, W) in [0, 255], H, W = ``input_size``
    trajs         float32 (T, N, 2) (x, y) pixels of the crop, zero-padded after ``got_k_points``
    visibles      bool (T, N), False for padding and for points outside the crop
    got_k_points  int, the number of real tracks (at least N // 4)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from trackon2.dataset.augment import AugmentParams, center_crop, photometric_augment, spatial_augment
from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.file_io import list_images, load_npy_dict, read_rgb, require_dir, require_keys
from trackon2.dataset.loading import item_rng
from trackon2.dataset.movi_f_sampling import sample_frame_indices, select_tracks

MAX_RESAMPLES = 10
CLOSE_RADIUS = 1000.0


class MoviFBase(Dataset):
    """Turns a clip (frames, tracks, visibility) into a padded, augmented training sample.

    ``use_augs`` switches all augmentations (off: the reference's plain crop); ``photometric_augs`` switches only the
    eraser, colour jitter and blur, leaving the spatial ones.
    """

    def __init__(
        self,
        data_root: str | None,
        T: int,
        N: int,
        input_size: Sequence[int],
        frame_sampling: str = "uniform",
        frame_sample_ratio: float = 1.0,
        random_frames_sorted: bool = True,
        use_augs: bool = True,
        photometric_augs: bool = True,
        aug_params: AugmentParams = AugmentParams(),
    ) -> None:
        super().__init__()
        self.data_root = data_root
        self.seq_len = self.T = int(T)
        self.traj_per_sample = self.N = int(N)
        self.crop_size = (int(input_size[0]), int(input_size[1]))
        self.frame_sampling = frame_sampling
        self.frame_sample_ratio = float(frame_sample_ratio)
        self.random_frames_sorted = bool(random_frames_sorted)
        self.use_augs = use_augs
        self.photometric_augs = photometric_augs
        self.aug_params = aug_params

    @classmethod
    def from_config(cls, config: Any, **options: Any) -> "MoviFBase":
        """Built from a training config (namespace with the reference's key names); ``options`` are the augmentation
        switches of ``__init__``."""
        return cls(config.movi_f_root, config.T, config.N, config.input_size, config.frame_sampling,
                   config.frame_sample_ratio, getattr(config, "random_frames_sorted", True), **options)

    def load_clip(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (T, H, W, 3) frames, float (T, N, 2) tracks and bool (T, N) visibility of ``T`` sampled frames."""
        raise NotImplementedError

    def getitem_helper(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None:
        """Augment, crop and select tracks; ``None`` when fewer than N // 4 tracks survive."""
        frames, tracks, visible = self.load_clip(index, rng)
        visible = visible.copy()
        crop_h, crop_w = self.crop_size
        if self.use_augs:
            if self.photometric_augs:
                frames = photometric_augment(frames, tracks, visible, rng, self.aug_params)
            frames, tracks = spatial_augment(frames, tracks, visible, self.crop_size, rng, self.aug_params)
        else:
            if frames.shape[1] < crop_h or frames.shape[2] < crop_w:
                raise DatasetFormatError(self.data_root, f"frames {frames.shape[1:3]} are smaller than input_size {self.crop_size}")
            frames, tracks = center_crop(frames, tracks, self.crop_size, rng)

        x, y = tracks[..., 0], tracks[..., 1]
        visible &= (x >= 0) & (x <= crop_w) & (y >= 0) & (y <= crop_h)
        trajs = torch.from_numpy(np.ascontiguousarray(tracks, dtype=np.float32))
        visibility = torch.from_numpy(visible)
        centre = torch.tensor([crop_w / 2.0, crop_h / 2.0])
        close = torch.all(torch.linalg.vector_norm(trajs - centre, dim=-1) < CLOSE_RADIUS, dim=0)
        trajs, visibility = trajs[:, close], visibility[:, close]

        picked = select_tracks(visibility, self.N, rng)
        trajs, visibility = trajs[:, picked], visibility[:, picked]
        keep = visibility.any(dim=0)
        trajs, visibility = trajs[:, keep], visibility[:, keep]
        if trajs.shape[1] < self.N // 4:
            return None
        rgbs = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
        return rgbs, trajs, visibility, int(trajs.shape[1])

    def sample(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The item for ``index`` drawn with ``rng``; a clip with too few usable tracks is replaced by a random one."""
        for _ in range(MAX_RESAMPLES):
            result = self.getitem_helper(index, rng)
            if result is not None:
                break
            index = int(rng.integers(len(self)))
        else:
            raise DatasetFormatError(self.data_root, f"{MAX_RESAMPLES} samples in a row had fewer than N // 4 = {self.N // 4} visible tracks")
        rgbs, trajs, visibles, got_k_points = result
        padded_trajs = torch.zeros(self.T, self.N, 2)
        padded_trajs[:, :got_k_points] = trajs
        padded_visibles = torch.zeros(self.T, self.N, dtype=torch.bool)
        padded_visibles[:, :got_k_points] = visibles
        return rgbs, padded_trajs, padded_visibles, got_k_points

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        return self.sample(index, item_rng())


class MoviFLarge(MoviFBase):
    """The MOVi-F folder reader (one sub-folder per sample, sorted by name)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.data_root is None:
            raise DatasetFormatError("movi_f_root", "not set in the config")
        self.root = require_dir(self.data_root, "MOVi-F root")
        self.seq_names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.seq_names:
            raise DatasetFormatError(self.root, "contains no sample folders")

    def __len__(self) -> int:
        return len(self.seq_names)

    def read_annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Tracks (T, N, 2) and visibility (T, N) of a sample, checked for shape."""
        name = self.seq_names[index]
        path = self.root / name / f"{name}.npy"
        annotation = load_npy_dict(path)
        require_keys(annotation, ("coords", "visibility"), path)
        coords = np.asarray(annotation["coords"], dtype=np.float32)
        occluded = np.asarray(annotation["visibility"]).astype(bool)
        if coords.ndim != 3 or coords.shape[2] != 2:
            raise DatasetFormatError(path, f"'coords' must be (N, T, 2), got shape {coords.shape}")
        if occluded.shape != coords.shape[:2]:
            raise DatasetFormatError(path, f"'visibility' has shape {occluded.shape}, 'coords' has {coords.shape}")
        return coords.transpose(1, 0, 2), ~occluded.T

    def load_clip(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tracks, visible = self.read_annotation(index)
        frame_dir = self.root / self.seq_names[index] / "frames"
        frame_paths = list_images(frame_dir)
        if len(frame_paths) != tracks.shape[0]:
            raise DatasetFormatError(frame_dir, f"{len(frame_paths)} frames, but the annotation has {tracks.shape[0]}")
        try:
            chosen = sample_frame_indices(len(frame_paths), self.T, self.frame_sampling, self.frame_sample_ratio, rng,
                                          sort_random=self.random_frames_sorted)
        except ValueError as exc:
            raise DatasetFormatError(frame_dir, str(exc)) from None
        frames = [read_rgb(frame_paths[i]) for i in chosen]
        if any(frame.shape != frames[0].shape for frame in frames):
            raise DatasetFormatError(frame_dir, "frames differ in size")
        return np.stack(frames), tracks[chosen], visible[chosen]
