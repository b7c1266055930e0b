"""YAML configuration with the reference's key names, validated on load.

A config is a flat mapping. Every key must be known (a typo is an error naming the closest known key) and
every value must have the expected type. The result is an ``argparse.Namespace`` so that code written for the
reference's ``args`` object works unchanged.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from trackon2.model.vit import VITS

VIT_BACKBONES = tuple(VITS)
FRAME_SAMPLINGS = ("uniform", "random", "uniform_mixed")
EVAL_DATASETS = ("davis", "rgb_stacking", "kinetics", "robotap", "ego_points")
# Hugging Face model types of the ViT families (vit_backbone's prefix) a backbone_config may describe.
VIT_MODEL_TYPES = {"dinov2": "dinov2", "dinov3": "dinov3_vit"}
# Every attention layer of the tracker has this many heads, so D must be a multiple of it.
TRACKER_HEADS = 4
# Keys that must be at least 1 (at least 0 for num_workers); optional ones only when set.
_POSITIVE = ("N", "T", "M", "D", "K", "decoder_layer_num", "predicton_head_layer_num", "rerank_layer_num", "M_i",
             "epoch_num", "bs", "iters_per_epoch", "save_every")


class ConfigError(ValueError):
    """A configuration file or mapping that cannot be used."""


@dataclass(frozen=True)
class _Key:
    kind: type | tuple[type, ...]
    default: Any
    choices: tuple[Any, ...] | None = None


_NUMBER = (int, float)
_OPT_STR = (str, type(None))

# Defaults follow the reference's argument parser; the YAML files override them.
SCHEMA: dict[str, _Key] = {
    # data
    "movi_f_root": _Key(_OPT_STR, None),
    "tapvid_root": _Key(_OPT_STR, None),
    "eval_dataset": _Key(str, "davis", EVAL_DATASETS),
    "frame_sampling": _Key(str, "uniform", FRAME_SAMPLINGS),
    "frame_sample_ratio": _Key(_NUMBER, 1.0),
    "input_size": _Key(list, [384, 512]),
    "N": _Key(int, 384),
    "T": _Key(int, 48),
    # model
    "M": _Key(int, 24),
    "D": _Key(int, 256),
    "K": _Key(int, 16),
    "decoder_layer_num": _Key(int, 3),
    "predicton_head_layer_num": _Key(int, 3),
    "rerank_layer_num": _Key(int, 3),
    "vit_backbone": _Key(str, "dinov2_s", VIT_BACKBONES),
    "vit_upsample_factor": _Key(_NUMBER, 1.0),
    "backbone_config": _Key((dict, type(None)), None),
    # inference
    "M_i": _Key((int, type(None)), None),  # unset: runtime.memory_size.inference_memory_size decides
    "delta_v": _Key(_NUMBER, 0.8),
    # training
    "lambda_patch_cls": _Key(_NUMBER, 3.0),
    "evaluation": _Key(bool, False),
    "epoch_num": _Key(int, 150),
    "lr": _Key(_NUMBER, 5e-4),
    "wd": _Key(_NUMBER, 1e-5),
    "bs": _Key(int, 1),
    "grad_checkpoint": _Key(bool, False),
    "amp": _Key(bool, True),
    "model_save_path": _Key(_OPT_STR, None),
    "checkpoint_path": _Key(_OPT_STR, None),
    "seed": _Key(int, 1234),
    "num_workers": _Key(int, 4),
    "iters_per_epoch": _Key((int, type(None)), None),
    # checkpoint.pt is also written every save_every iterations (None: only at epoch ends)
    "save_every": _Key((int, type(None)), 500),
    "log_backend": _Key(str, "tensorboard", ("tensorboard", "csv", "wandb", "none")),
    # switches restoring the reference's behaviour where ours deliberately differs (README: "Deviations")
    "frozen_vit_train_mode": _Key(bool, False),
    "random_frames_sorted": _Key(bool, True),
    "empty_mask_loss": _Key(str, "zero", ("zero", "nan")),
    "min_warmup_steps": _Key(int, 1),
    "logged_total_loss": _Key(str, "sum", ("sum", "reference")),
}


def _check_value(key: str, value: Any, spec: _Key, source: str) -> Any:
    if isinstance(value, bool) and spec.kind in (int, _NUMBER):
        raise ConfigError(f"{source}: key '{key}' must be a number, got the boolean {value!r}")
    if not isinstance(value, spec.kind):
        expected = spec.kind if isinstance(spec.kind, type) else " or ".join(k.__name__ for k in spec.kind)
        expected = getattr(expected, "__name__", expected)
        raise ConfigError(f"{source}: key '{key}' must be {expected}, got {type(value).__name__} {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{source}: key '{key}' is {value!r}; expected one of {list(spec.choices)}")
    if key == "input_size":
        if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
            raise ConfigError(f"{source}: 'input_size' must be [H, W] with two positive integers, got {value!r}")
        if value[0] % 32 or value[1] % 32:
            raise ConfigError(f"{source}: 'input_size' {value} must be divisible by 32 (the adapter's coarsest stride)")
    if key == "min_warmup_steps" and value < 0:
        raise ConfigError(f"{source}: 'min_warmup_steps' must be 0 (the reference) or more, got {value}")
    if key == "backbone_config" and value is not None and "model_type" not in value:
        raise ConfigError(f"{source}: 'backbone_config' must be a Hugging Face config dict with a 'model_type'")
    return list(value) if isinstance(value, list) else value


def _check_ranges(config: Mapping[str, Any], source: str) -> None:
    """Values that have the right type but cannot work (zero sizes, D not a multiple of the head count)."""
    for key in _POSITIVE:
        if config[key] is not None and config[key] < 1:
            raise ConfigError(f"{source}: '{key}' must be at least 1, got {config[key]}")
    if config["num_workers"] < 0:
        raise ConfigError(f"{source}: 'num_workers' must be 0 or more, got {config['num_workers']}")
    if not 0 <= config["delta_v"] <= 1:
        raise ConfigError(f"{source}: 'delta_v' is a visibility probability threshold in [0, 1], got {config['delta_v']}")
    if config["D"] % TRACKER_HEADS:
        raise ConfigError(f"{source}: 'D' ({config['D']}) must be divisible by {TRACKER_HEADS}, the number of "
                          "attention heads")
    if config["backbone_config"] is not None:
        _check_backbone_config(config["backbone_config"], config["vit_backbone"], source)


def _check_backbone_config(backbone: Mapping[str, Any], vit_backbone: str, source: str) -> None:
    """A backbone_config must describe the ViT family of ``vit_backbone`` with option names transformers knows
    for a DINO ViT (transformers silently accepts any name, so a typo would build a different ViT). Names of either
    family are accepted: exported configs carry some of the other's (DINOv2 files hold ``intermediate_size``)."""
    wanted = VIT_MODEL_TYPES.get(vit_backbone.split("_")[0])
    model_type = backbone["model_type"]
    if model_type != wanted:
        raise ConfigError(f"{source}: backbone_config model_type {model_type!r} does not fit vit_backbone "
                          f"{vit_backbone!r} (expected {wanted!r})")
    patch_size = backbone.get("patch_size", VITS[vit_backbone].patch_size)
    if patch_size != VITS[vit_backbone].patch_size:
        raise ConfigError(f"{source}: backbone_config patch_size {patch_size!r} does not fit vit_backbone "
                          f"{vit_backbone!r} (its patches are {VITS[vit_backbone].patch_size} px)")
    import inspect

    import transformers

    known = set(transformers.PretrainedConfig().to_dict()) | {"torch_dtype"}
    for config_class in (transformers.CONFIG_MAPPING[name] for name in VIT_MODEL_TYPES.values()):
        known |= set(config_class().to_dict()) | set(inspect.signature(config_class.__init__).parameters)
    unknown = sorted(set(backbone) - known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"{source}: unknown backbone_config key(s) {', '.join(hints)}")


def config_from_mapping(values: Mapping[str, Any], source: str = "config") -> argparse.Namespace:
    """Validate a mapping of config keys and fill in the defaults of the keys it leaves out."""
    if isinstance(values, argparse.Namespace):
        values = vars(values)
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
    unknown = [k for k in values if k not in SCHEMA]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), SCHEMA, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"{source}: unknown key(s) {', '.join(hints)}")
    resolved = {key: spec.default for key, spec in SCHEMA.items()}
    for key, value in values.items():
        resolved[key] = _check_value(key, value, SCHEMA[key], source)
    _check_ranges(resolved, source)
    return argparse.Namespace(**resolved)


SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "config"


def config_file(path: str | Path) -> Path:
    """A config file as given where it exists; else, for ``config/<name>.yaml`` or ``<name>.yaml``, the file of that
    name shipped with the package, so that the documented ``config/...`` paths work from any directory."""
    path = Path(path)
    if not path.is_file() and path.parts[:-1] in ((), ("config",)) and (SHIPPED_CONFIGS / path.name).is_file():
        return SHIPPED_CONFIGS / path.name
    return path


def load_config(path: str | Path, **overrides: Any) -> argparse.Namespace:
    """Read a YAML config file (see ``config_file``), apply keyword overrides and validate the result."""
    path = config_file(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_mapping(values, source=str(path))
