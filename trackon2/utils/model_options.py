"""Model options shared by the front ends and the evaluation CLIs (config, checkpoint or variant name, device, AMP)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from trackon2.model.checkpoint import CheckpointError, download_released_checkpoint
from trackon2.model.registry import default_variant, get_variant, is_variant_name, variant_names
from trackon2.model.yaml_schema import config_from_mapping, load_config
from trackon2.runtime.predictor import SUPPORT_GRID_SIZE, Predictor

RANDOM_WEIGHTS = "none"
DEFAULT_CONFIG = "config/test.yaml"
TINY_CONFIG = "config/tiny.yaml"  # a small random-weight model: the whole pipeline offline, without downloads
CHECKPOINT_HELP = (f"a checkpoint file, or the name of released weights from the Hugging Face hub "
                   f"({', '.join(variant_names())})")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"model config (YAML) (default: the named variant's configuration, else {DEFAULT_CONFIG})")
    parser.add_argument("--checkpoint", default=None,
                        help=f"{CHECKPOINT_HELP}, or 'none' for random weights (needs a config with backbone_config; "
                             "for tests) (default: the released weights matching the config's vit_backbone)")
    parser.add_argument("--support_grid_size", type=int, default=SUPPORT_GRID_SIZE)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")


def resolve_checkpoint(name: str | None, vit_backbone: str) -> Path | None:
    """A checkpoint file from a --checkpoint value: the file itself, the released weights of the variant it names
    (or of the default variant for the config's ViT), or None for ``none`` (random weights)."""
    if name == RANDOM_WEIGHTS:
        return None
    if name is not None and not is_variant_name(name):
        if not Path(name).exists():
            raise CheckpointError(f"checkpoint not found: {name} (--checkpoint takes {CHECKPOINT_HELP})")
        return Path(name)
    variant = name or default_variant(vit_backbone)
    try:
        return download_released_checkpoint(variant)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (the {'default ' if name is None else ''}released {variant} weights; "
                              "give a checkpoint file with --checkpoint FILE)") from err


def load_model_options(checkpoint: str | None, config_path: str | None) -> tuple[argparse.Namespace, Path | None]:
    """The config and checkpoint file named by --config / --checkpoint. Without --config, a variant name brings its
    own configuration from the registry; anything else uses ``DEFAULT_CONFIG``."""
    if config_path is not None:
        config = load_config(config_path)
    elif checkpoint is not None and is_variant_name(checkpoint):
        config = config_from_mapping(get_variant(checkpoint).config.to_dict())
    else:
        config = load_config(DEFAULT_CONFIG)
    if checkpoint == RANDOM_WEIGHTS and config.backbone_config is None:
        raise CheckpointError("--checkpoint none builds random weights and needs a config with backbone_config "
                              f"({config_path or DEFAULT_CONFIG} has none; {TINY_CONFIG} has one)")
    return config, resolve_checkpoint(checkpoint, config.vit_backbone)


def build_predictor(args: argparse.Namespace) -> Predictor:
    """Load the config and weights named by the model options, on ``args.device``."""
    config, checkpoint = load_model_options(args.checkpoint, args.config)
    predictor = Predictor(config, checkpoint_path=checkpoint, support_grid_size=args.support_grid_size)
    return predictor.to(args.device)


def autocast_for(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when --amp is given on CUDA, else a no-op."""
    device = torch.device(args.device)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
