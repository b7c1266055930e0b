"""Each tracker's predictions per video on disk, so that a later run (an ensemble over the same candidates, another
metric) does not run the trackers again.

Layout: ``<cache_dir>/<dataset>/<label>-<key>/<index>.npz`` holding ``tracks`` float32 (T, N, 2), ``visibility``
bool (T, N) and ``sample_digest``, a digest of the video's name, size and queries. ``key`` is a digest of the
tracker's identity (entry, weights file with its size and modification time, config, settings) and of the dataset's
name and path, and ``settings.json`` in the folder spells them out; so a changed setting uses another folder, and a
file whose video has changed is recomputed. Trackers that declare no identity are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trackon2.dataset.eval_sample import EvalSample


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def sample_digest(sample: EvalSample) -> str:
    """What a cached prediction must have been made for: the video's name and size and its queries."""
    queries = sample.queries.detach().cpu().float().contiguous().numpy()
    return hashlib.sha256(repr((sample.name, tuple(sample.video.shape))).encode() + queries.tobytes()).hexdigest()


class PredictionCache:
    """Cached predictions of one dataset (``dataset`` is what identifies it: name, resolved path)."""

    def __init__(self, root: str | Path, dataset: dict[str, Any]) -> None:
        self.root = Path(root)
        self.dataset = dict(dataset)

    def folder(self, label: str, identity: dict[str, Any]) -> Path:
        """The folder of ``label``'s predictions with this identity on this dataset."""
        key = _digest({"tracker": identity, "dataset": self.dataset})[:16]
        return self.root / str(self.dataset.get("dataset_name", "dataset")) / f"{label}-{key}"

    def load(self, label: str, identity: dict[str, Any] | None, index: int,
             sample: EvalSample) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The stored (tracks, visibility) of video ``index``, or None when absent, unreadable or made for another
        video."""
        if identity is None:
            return None
        path = self.folder(label, identity) / f"{index:06d}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["sample_digest"]) != sample_digest(sample):
                    return None
                return torch.from_numpy(stored["tracks"].copy()), torch.from_numpy(stored["visibility"].copy())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # a file cut short by a crash: recomputed and rewritten

    def store(self, label: str, identity: dict[str, Any] | None, index: int, sample: EvalSample,
              tracks: torch.Tensor, visibility: torch.Tensor) -> None:
        """Write video ``index``'s predictions (atomically: a crash leaves the old file or none)."""
        if identity is None:
            return
        folder = self.folder(label, identity)
        folder.mkdir(parents=True, exist_ok=True)
        settings = folder / "settings.json"
        if not settings.exists():
            described = {"tracker": identity, "dataset": self.dataset}
            settings.write_text(json.dumps(described, indent=2, default=str) + "\n")
        path = folder / f"{index:06d}.npz"
        temporary = folder / f".{index:06d}.tmp.npz"
        np.savez(temporary, tracks=tracks.detach().cpu().float().numpy(),
                 visibility=visibility.detach().cpu().bool().numpy(), sample_digest=np.array(sample_digest(sample)))
        os.replace(temporary, path)
