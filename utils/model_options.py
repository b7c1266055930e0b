"""The model options shared by the interactive front ends (config, checkpoint, device, AMP) and building the model."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from model.checkpoint import HUB_FILES, CheckpointError, download_released_checkpoint
from model.trackon_predictor import SUPPORT_GRID_SIZE, Predictor
from model.vit import vit_family
from utils.config import load_config

RANDOM_WEIGHTS = "none"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/test.yaml", help="model config (YAML)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file, 'dinov2' / 'dinov3' for the released weights from the hub, or 'none' "
                             "for random weights (needs a config with backbone_config; for tests) (default: the "
                             "released weights matching the config's vit_backbone)")
    parser.add_argument("--support_grid_size", type=int, default=SUPPORT_GRID_SIZE)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")


def resolve_checkpoint(name: str | None, vit_backbone: str) -> Path | None:
    """A checkpoint file from a --checkpoint value: the file itself, the released weights it names (or that match
    the config), or None for ``none`` (random weights)."""
    if name == RANDOM_WEIGHTS:
        return None
    if name is not None and name not in HUB_FILES:
        if not Path(name).exists():
            raise CheckpointError(f"checkpoint not found: {name} (--checkpoint takes a checkpoint file or the name "
                                  f"of released weights: {', '.join(sorted(HUB_FILES))})")
        return Path(name)
    family = name or vit_family(vit_backbone)
    try:
        return download_released_checkpoint(family)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (the {'default ' if name is None else ''}released {family} weights; "
                              "give a checkpoint file with --checkpoint FILE)") from err


def build_predictor(args: argparse.Namespace) -> Predictor:
    """Load the config and weights named by the model options, on ``args.device``."""
    config = load_config(args.config)
    if args.checkpoint == RANDOM_WEIGHTS and getattr(config, "backbone_config", None) is None:
        raise CheckpointError("--checkpoint none builds random weights and needs a config with backbone_config "
                              f"({args.config} has none)")
    predictor = Predictor(config, checkpoint_path=resolve_checkpoint(args.checkpoint, config.vit_backbone),
                          support_grid_size=args.support_grid_size)
    return predictor.to(args.device)


def autocast_for(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when --amp is given on CUDA, else a no-op."""
    device = torch.device(args.device)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
