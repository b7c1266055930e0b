"""Typed views of a full (training) config: the model, the data and the optimisation settings, each on its own.

A YAML config stays one flat mapping with the reference's key names (validated by ``model.yaml_schema``); these
dataclasses split it so that each part of the code receives only the settings it uses. Every key of the schema
belongs to exactly one of them (the tests check it).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

from trackon2.model.config import ModelConfig
from trackon2.model.yaml_schema import config_from_mapping, load_config

_Settings = TypeVar("_Settings", "DataConfig", "TrainingConfig")


def _pick(cls: type[_Settings], config: argparse.Namespace) -> _Settings:
    return cls(**{field.name: getattr(config, field.name) for field in dataclasses.fields(cls)})


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how training clips and the evaluation set are drawn."""

    movi_f_root: str | None
    tapvid_root: str | None
    eval_dataset: str  # TAP-Vid set scored after each epoch
    frame_sampling: str
    frame_sample_ratio: float
    N: int  # query tracks per training clip
    T: int  # frames per training clip
    random_frames_sorted: bool  # reference switch: keep randomly sampled frames in time order


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation, checkpointing and logging of a training run, and the reference switches of the loss."""

    epoch_num: int
    lr: float
    wd: float
    bs: int
    amp: bool
    seed: int
    num_workers: int
    iters_per_epoch: int | None  # None: one pass over the data per epoch
    save_every: int | None  # also save checkpoint.pt every this many iterations
    model_save_path: str | None
    checkpoint_path: str | None  # resume from (or start with) these weights
    lambda_patch_cls: float
    evaluation: bool
    log_backend: str
    min_warmup_steps: int
    frozen_vit_train_mode: bool
    empty_mask_loss: str
    logged_total_loss: str


@dataclass(frozen=True)
class RunConfig:
    """A whole config: ``model``, ``data`` and ``training`` settings."""

    model: ModelConfig
    data: DataConfig
    training: TrainingConfig

    @classmethod
    def from_namespace(cls, config: argparse.Namespace | Mapping[str, Any]) -> "RunConfig":
        """Split a config (validated again, defaults filled in) into its three parts."""
        config = config_from_mapping(config)
        return cls(ModelConfig.from_namespace(config), _pick(DataConfig, config), _pick(TrainingConfig, config))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        return cls.from_namespace(load_config(path, **overrides))
