"""Training checkpoints: what they hold, how they are written (atomically) and how a run resumes from one.

A checkpoint is a dict readable with ``torch.load(..., weights_only=True)`` (so ``Predictor`` can load it):

    model       the tracker's state dict (no DDP ``module.`` prefix; the frozen ViT included)
    optimizer   AdamW state;  scheduler  LR scheduler state;  scaler  GradScaler state or None
    epoch       the number of finished epochs (the epoch to run or continue)
    iteration   the number of optimiser steps taken so far
    epoch_iteration   the steps already taken in ``epoch`` (0 at an epoch's end; > 0 in a mid-epoch checkpoint)
    best_aj, best_oa, best_delta_avg   [epoch, score] of the best evaluation so far ([-1, -1] before any)
    args        the run's config as a plain dict
    parameter_order   "reference": the optimizer state lists parameters in the reference's order (older files
                lack it and are renumbered on resume, see training.reference_checkpoint)

File names as the reference: ``checkpoint.pt`` every epoch (and every ``save_every`` iterations, or on SIGINT/SIGTERM,
within one), ``best_aj.pt``, ``best_oa.pt`` and ``best_delta.pt`` when the respective score improves.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from trackon2.model.checkpoint import CheckpointError, load_state_dict_strict
from trackon2.training.reference_checkpoint import (
    PARAMETER_ORDER,
    PARAMETER_ORDER_KEY,
    check_optimizer_state,
    check_reference_layout,
    is_reference_layout,
    read_training_checkpoint,
    upgrade_legacy_optimizer_state,
)

LAST_NAME = "checkpoint.pt"
BEST_NAMES = {"aj": "best_aj.pt", "oa": "best_oa.pt", "delta_avg": "best_delta.pt"}
METRICS = ("aj", "oa", "delta_avg")


def initial_best() -> dict[str, list[float]]:
    """[epoch, score] per metric before any evaluation, as the reference."""
    return {metric: [-1, -1] for metric in METRICS}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync it, then rename it over ``path``.

    A failure at any point (including a crash) leaves the previous file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o666 & ~_current_umask())  # mkstemp creates 0600 files
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _plain(value: Any) -> Any:
    """Config values as plain Python types (for weights_only loading)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def make_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    epoch: int,
    iteration: int,
    best: dict[str, list[float]],
    args: argparse.Namespace | None = None,
    epoch_iteration: int = 0,
) -> dict[str, Any]:
    """The checkpoint dict of the current training state (``model`` is the unwrapped tracker)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "iteration": int(iteration),
        "epoch_iteration": int(epoch_iteration),
        "best_aj": list(best["aj"]),
        "best_oa": list(best["oa"]),
        "best_delta_avg": list(best["delta_avg"]),
        "args": _plain(vars(args)) if args is not None else None,
        PARAMETER_ORDER_KEY: PARAMETER_ORDER,
    }


def remove_stale_temporaries(save_dir: str | Path) -> list[Path]:
    """Delete temporary files a killed ``atomic_save`` left in ``save_dir``; returns them."""
    stale = [path for name in (LAST_NAME, *BEST_NAMES.values())
             for path in Path(save_dir).glob(f".{name}.*.tmp") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoints(checkpoint: dict[str, Any], save_dir: str | Path, improved: dict[str, bool]) -> list[Path]:
    """Write ``checkpoint.pt`` and the best-so-far files whose metric improved; returns the written paths."""
    save_dir = Path(save_dir)
    written = [save_dir / LAST_NAME]
    atomic_save(checkpoint, written[0])
    for metric, name in BEST_NAMES.items():
        if improved.get(metric):
            atomic_save(checkpoint, save_dir / name)
            written.append(save_dir / name)
    return written


def update_best(best: dict[str, list[float]], scores: dict[str, float], epoch: int) -> dict[str, bool]:
    """Record scores that beat the best so far (strictly, as the reference); returns which ones improved."""
    improved = {}
    for metric in METRICS:
        improved[metric] = scores[metric] > best[metric][1]
        if improved[metric]:
            best[metric] = [epoch, float(scores[metric])]
    return improved


def resume_path(checkpoint_path: str | None, save_dir: str | None) -> Path | None:
    """The checkpoint to resume from: ``checkpoint_path`` if given (it must exist), else ``save_dir/checkpoint.pt``
    when present, else None (a fresh run)."""
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        return path
    if save_dir is not None and (Path(save_dir) / LAST_NAME).is_file():
        return Path(save_dir) / LAST_NAME
    return None


def restore(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
) -> dict[str, Any]:
    """Load a training checkpoint into the (unwrapped) model, optimizer, scheduler and scaler.

    The model must match (a ``module.`` prefix is accepted; the frozen ViT may be absent, as in released weights). A checkpoint without optimizer state (e.g.
    released weights) only initialises the model. Checkpoints written by the reference's trainer are accepted too
    (``training.reference_checkpoint``). Returns the run variables: epoch, iteration, epoch_iteration, the best
    scores and the saved config (``args``, None when absent).
    """
    checkpoint = read_training_checkpoint(path)
    if is_reference_layout(checkpoint):
        check_reference_layout(checkpoint, str(path))
    load_state_dict_strict(model, checkpoint, source=str(path))
    run = {"epoch": 0, "iteration": 0, "epoch_iteration": 0, "best": initial_best(), "args": None}
    if not isinstance(checkpoint.get("optimizer"), dict):
        return run
    upgrade_legacy_optimizer_state(checkpoint, optimizer, model)
    check_optimizer_state(checkpoint["optimizer"], optimizer, model, str(path))
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler") is not None:
            scaler.load_state_dict(checkpoint["scaler"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: optimizer/scheduler state does not fit this run: {err}") from None
    run["epoch"] = int(checkpoint.get("epoch", 0))
    run["iteration"] = int(checkpoint.get("iteration", 0))
    run["epoch_iteration"] = int(checkpoint.get("epoch_iteration", 0))
    run["args"] = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else None
    for metric in METRICS:
        value = checkpoint.get(f"best_{metric}")
        if value is not None:
            run["best"][metric] = [value[0], float(value[1])]
    return run
