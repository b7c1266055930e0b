"""Train Track-On2 on MOVi-F, evaluating on TAP-Vid DAVIS after every epoch.

    torchrun --nproc_per_node=G main.py --config_path config/train.yaml --movi_f_root DIR \
        --tapvid_root tapvid_davis.pkl --model_save_path DIR [--checkpoint_path FILE]

also as a single process with ``python main.py ...``. Every config key can be overridden on the command line
(``--epoch_num 2 --iters_per_epoch 10 --num_workers 0 ...``). A run resumes from ``--checkpoint_path`` or, without
it, from ``<model_save_path>/checkpoint.pt`` when that exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Sequence

from trackon2.model.yaml_schema import SCHEMA, ConfigError, config_from_mapping, load_config
from trackon2.utils.config_help import CONFIG_HELP

EXIT_SETUP_ERROR = 2


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _override_kind(key: str) -> dict[str, Any]:
    """argparse settings for overriding config ``key`` from the command line."""
    kind = SCHEMA[key].kind
    if key == "input_size":
        return {"type": int, "nargs": 2, "metavar": ("H", "W")}
    if kind is bool:
        return {"type": _bool, "metavar": "BOOL"}
    if kind is int:
        return {"type": int}
    if kind == (int, type(None)):
        return {"type": _optional_int}
    if kind == (int, float):
        return {"type": _number}
    if kind in (str, (str, type(None))):
        return {"type": str}
    return {}


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = argparse.ArgumentParser(description="Training for Track-On2")
    parser.add_argument("--config_path", required=True, help="training config YAML (e.g. config/train.yaml)")
    parser.add_argument("--max_epochs_per_run", type=int, default=None,
                        help="stop (after saving) once this many epochs ran in this process; rerun to resume")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda when available, else cpu")
    overrides = parser.add_argument_group("config overrides (any key of the config)")
    for key in SCHEMA:
        settings = _override_kind(key)
        if settings:
            settings.setdefault("metavar", key.upper())
            choices = f"; one of {', '.join(SCHEMA[key].choices)}" if SCHEMA[key].choices else ""
            overrides.add_argument(f"--{key}", dest=f"cfg_{key}", default=argparse.SUPPRESS,
                                   help=f"{CONFIG_HELP[key]}{choices}", **settings)
    args = parser.parse_args(argv)
    values = {key[4:]: value for key, value in vars(args).items() if key.startswith("cfg_")}
    return args, values


def load_training_config(path: str, overrides: dict[str, Any]) -> argparse.Namespace:
    """The YAML config with the command-line overrides (``--iters_per_epoch none`` included) applied."""
    config = load_config(path, **overrides)
    cleared = {key: None for key, value in overrides.items() if value is None}
    return config_from_mapping({**vars(config), **cleared}, source=path) if cleared else config


def check_paths(config: argparse.Namespace) -> None:
    """Fail early, with one line, on a missing dataset or output path."""
    if config.movi_f_root is None:
        raise ConfigError("movi_f_root is not set (give --movi_f_root DIR)")
    if not Path(config.movi_f_root).is_dir():
        raise ConfigError(f"--movi_f_root: folder not found: {config.movi_f_root}")
    if config.tapvid_root is None:
        raise ConfigError("tapvid_root is not set (give --tapvid_root FILE)")
    if not Path(config.tapvid_root).exists():
        raise ConfigError(f"--tapvid_root: not found: {config.tapvid_root}")
    if config.model_save_path is None:
        raise ConfigError("model_save_path is not set (give --model_save_path DIR)")
    for folder in (Path(config.model_save_path), *Path(config.model_save_path).parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"--model_save_path {config.model_save_path}: {folder} is a file, not a folder")
            break
    if config.checkpoint_path is not None and not Path(config.checkpoint_path).is_file():
        raise ConfigError(f"--checkpoint_path: file not found: {config.checkpoint_path}")


def check_logger(config: argparse.Namespace) -> None:
    """The optional logging package must be installed before hours of set-up, not after."""
    if config.log_backend == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ConfigError("log_backend 'wandb' needs the wandb package (pip install wandb), or choose "
                          "--log_backend tensorboard, csv or none")


def main(argv: Sequence[str] | None = None) -> int:
    cli, overrides = parse_args(argv)
    try:
        config = load_training_config(cli.config_path, overrides)
        check_paths(config)
        check_logger(config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_SETUP_ERROR

    import torch

    if cli.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but no CUDA device is available", file=sys.stderr)
        return EXIT_SETUP_ERROR

    from trackon2.dataset.errors import DatasetFormatError
    from trackon2.model.checkpoint import CheckpointError
    from trackon2.training.interrupts import TrainingInterrupted
    from trackon2.training.launcher_hint import repeat_after_launcher
    from trackon2.training.trainer import run

    try:
        run(config, max_epochs_per_run=cli.max_epochs_per_run, device=cli.device)
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr, flush=True)
        if int(os.environ.get("RANK", "0")) == 0:
            repeat_after_launcher(str(stop))
        return stop.exit_code
    except (DatasetFormatError, CheckpointError, ConfigError, pickle.UnpicklingError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_SETUP_ERROR
    except ValueError as err:  # setup problems raised before training (e.g. an unusable eval set)
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_SETUP_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
