"""Small synthetic training data shared by the training tests: MOVi-F clips, a DAVIS pickle and a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.tiny_model import tiny_config
from trackon2.dataset.synthetic import write_movi_f, write_tapvid_davis


def write_training_data(root: Path, train_keys: dict[str, Any], movi_videos: int, movi_frames: int,
                        davis_frames: int = 4, davis_points: int = 8) -> dict[str, Path]:
    """Write MOVi-F videos, a one-video DAVIS pickle and ``train.yaml`` (the tiny model with ``train_keys``, no
    paths) under ``root``; returns their paths."""
    write_movi_f(root / "movi_f", movi_videos, seed=0, num_frames=movi_frames, height=80, width=112, num_points=24)
    write_tapvid_davis(root / "davis.pkl", 1, seed=100, num_frames=davis_frames, height=64, width=96,
                       num_points=davis_points)
    values = {**vars(tiny_config()), **train_keys}
    for key in ("movi_f_root", "tapvid_root", "model_save_path", "checkpoint_path"):
        values.pop(key)
    (root / "train.yaml").write_text(yaml.safe_dump(values))
    return {"root": root, "movi": root / "movi_f", "davis": root / "davis.pkl", "config": root / "train.yaml"}
