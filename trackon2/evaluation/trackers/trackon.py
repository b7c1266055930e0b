"""Track-On2 trackers for the evaluation: every released variant of ``model.registry`` by its name, and
``trackon2``, a config plus a checkpoint of one's own, each built through the public ``Predictor``.

Options: ``checkpoint`` (a file, or a variant name for its released weights; a variant's own weights by default),
``config`` (a YAML file; a variant's own configuration by default, else ``config/test.yaml``), ``device``,
``benchmark`` (the benchmark's name, for its inference memory M_i: ``runtime.memory_size``), ``memory_size`` (the
user's M_i, over the benchmark's), ``support_grid_size``
(20, as the reference's evaluation) and ``allow_outside_queries`` (for benchmarks that query off-screen points).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import torch

from trackon2.evaluation.trackers.registry import TrackerRegistryError, register_tracker
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.registry import VARIANTS, get_variant, is_variant_name
from trackon2.model.yaml_schema import config_file, config_from_mapping, load_config
from trackon2.runtime.memory_size import inference_memory_size
from trackon2.runtime.predictor import SUPPORT_GRID_SIZE, Predictor
from trackon2.utils.model_options import DEFAULT_CONFIG, resolve_checkpoint

CONFIG_AND_CHECKPOINT = "trackon2"


class TrackOnTracker:
    """A ``Predictor`` as an evaluation tracker, with the identity of its weights and settings."""

    def __init__(self, predictor: Predictor, identity: dict[str, Any]) -> None:
        self.predictor = predictor
        self.identity = identity

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictor(video, queries)


def _model_config(variant: str | None, checkpoint: str | None, config: str | None) -> argparse.Namespace:
    if config is not None:
        return load_config(config)
    name = variant or (checkpoint if checkpoint is not None and is_variant_name(checkpoint) else None)
    if name is not None:
        return config_from_mapping(get_variant(name).config.to_dict())
    return load_config(DEFAULT_CONFIG)


def _check_files(variant: str | None, checkpoint: str | None, config: str | None) -> None:
    """A missing config or checkpoint file, or ``trackon2`` without a checkpoint, as one line."""
    label = variant or CONFIG_AND_CHECKPOINT
    if variant is None and checkpoint is None:
        raise TrackerRegistryError(f"{label} needs a checkpoint: give --checkpoint FILE (or the option "
                                   f"{label}.checkpoint=FILE)")
    if config is not None and not config_file(config).is_file():
        raise TrackerRegistryError(f"{label}: config file not found: {config}")
    if checkpoint is not None and not is_variant_name(checkpoint) and not Path(checkpoint).is_file():
        raise TrackerRegistryError(f"{label}: checkpoint file not found: {checkpoint}")


def build_trackon(variant: str | None = None, checkpoint: str | None = None, config: str | None = None,
                  device: str | torch.device = "cpu", memory_size: int | None = None,
                  support_grid_size: int = SUPPORT_GRID_SIZE, allow_outside_queries: bool = False,
                  benchmark: str | None = None) -> TrackOnTracker:
    """A Track-On2 tracker: ``variant``'s configuration and released weights unless ``config`` / ``checkpoint``
    name others (``variant`` None: the ``trackon2`` entry, which needs ``checkpoint``)."""
    _check_files(variant, checkpoint, config)
    model_args = _model_config(variant, checkpoint, config)
    model_args.M_i = inference_memory_size(model_args.M_i, benchmark=benchmark, override=memory_size)
    path = resolve_checkpoint(checkpoint or variant, model_args.vit_backbone)
    try:
        predictor = Predictor(model_args, checkpoint_path=path, support_grid_size=support_grid_size,
                              pin_query_points=False,
                              allow_outside_queries=allow_outside_queries)
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"cannot build {variant or CONFIG_AND_CHECKPOINT} with checkpoint {path}: {exc}") from exc
    device = torch.device(device)
    stat = Path(path).stat()
    identity = {
        "tracker": variant or CONFIG_AND_CHECKPOINT,
        "checkpoint": str(Path(path).resolve()),
        "checkpoint_size": stat.st_size,
        "checkpoint_mtime_ns": stat.st_mtime_ns,
        "config": vars(model_args),
        "support_grid_size": support_grid_size,
        "allow_outside_queries": allow_outside_queries,
        "device_type": device.type,
    }
    return TrackOnTracker(predictor.to(device).eval(), identity)


def _entry(variant: str | None) -> tuple[Callable[..., TrackOnTracker], Callable[..., None]]:
    """The registry factory and check of ``variant`` (None: ``trackon2``), with the options as keywords."""

    def factory(checkpoint: str | None = None, config: str | None = None, device: str | torch.device = "cpu",
                memory_size: int | None = None, support_grid_size: int = SUPPORT_GRID_SIZE,
                allow_outside_queries: bool = False, benchmark: str | None = None) -> TrackOnTracker:
        return build_trackon(variant, checkpoint, config, device, memory_size, support_grid_size,
                             allow_outside_queries, benchmark)

    def check(checkpoint: str | None = None, config: str | None = None, **_: Any) -> None:
        _check_files(variant, checkpoint, config)

    return factory, check


def _register() -> None:
    factory, check = _entry(None)
    register_tracker(CONFIG_AND_CHECKPOINT, description="Track-On2 from a config and a checkpoint of one's own",
                     check=check)(factory)
    for name, variant in VARIANTS.items():
        factory, check = _entry(name)
        register_tracker(name, description=variant.description, check=check)(factory)


_register()
