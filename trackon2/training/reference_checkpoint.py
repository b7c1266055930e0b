"""Training checkpoints written by the reference's trainer (gorkaydemir/track_on, branch track-on2, ``main.py``).

The reference saves, after every epoch, a dict with exactly these keys:

    model        ``model.state_dict()`` of the DDP-wrapped tracker: every key starts with ``module.``, the frozen
                 ViT included
    optimizer    AdamW state over ``filter(requires_grad, model.parameters())``: one parameter group, per-parameter
                 states (``step``, ``exp_avg``, ``exp_avg_sq``) keyed by position in that list
    scheduler    SequentialLR(LinearLR(1e-5, warm-up), CosineAnnealingLR) state; the same structure as
                 ``training.schedule`` builds, so it loads as is (with its own milestones and T_max)
    scaler       GradScaler state, or None without amp
    epoch        finished epochs (the next epoch to run);  iteration  optimiser steps so far
    best_aj, best_oa, best_delta_avg   [epoch, score] with the score a numpy float64

There is no ``args`` entry (our checkpoints always have one). Both layouts restore through
``training.checkpointing.restore``; this module recognises the reference's layout and checks it and the optimizer
state before anything is loaded, so that a moment can never land on the wrong tensor silently
(``model.checkpoint.read_checkpoint`` admits the numpy scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from trackon2.model.checkpoint import CheckpointError, read_checkpoint

# Our checkpoints carry this entry since the attention blocks register ``mha`` first (the reference's order); the
# optimizer state of one without it lists each block's feed-forward parameters before its ``mha`` ones.
PARAMETER_ORDER_KEY = "parameter_order"
PARAMETER_ORDER = "reference"
REFERENCE_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "best_aj", "best_oa", "best_delta_avg",
                  "iteration")
BEST_KEYS = ("best_aj", "best_oa", "best_delta_avg")
MOMENT_KEYS = ("exp_avg", "exp_avg_sq")


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint (ours or the reference's) on the CPU; it must be a dict."""
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: a checkpoint must be a dict, got {type(checkpoint).__name__}")
    return checkpoint


def is_reference_layout(checkpoint: Mapping[str, Any]) -> bool:
    """True for a training checkpoint written by the reference's trainer: an optimizer state but no ``args`` (which
    every checkpoint of ours has)."""
    return "args" not in checkpoint and "optimizer" in checkpoint


def check_reference_layout(checkpoint: Mapping[str, Any], source: str) -> None:
    """Refuse a reference-style checkpoint whose entries are missing or of the wrong kind, naming the entry."""
    missing = [key for key in REFERENCE_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{source}: reference training checkpoint lacks {missing}")
    for key in ("model", "optimizer", "scheduler"):
        if not isinstance(checkpoint[key], Mapping):
            raise CheckpointError(f"{source}: '{key}' must be a state dict, got {type(checkpoint[key]).__name__}")
    for key in ("epoch", "iteration"):
        value = checkpoint[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise CheckpointError(f"{source}: '{key}' must be a non-negative integer, got {value!r}")
    for key in BEST_KEYS:
        value = checkpoint[key]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise CheckpointError(f"{source}: '{key}' must be [epoch, score], got {value!r}")


def check_optimizer_state(state: Mapping[str, Any], optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                          source: str) -> None:
    """The saved AdamW state must list the optimizer's parameters in the same order: same group sizes, and each
    saved moment shaped like the parameter at its position (else it would be loaded onto the wrong tensor)."""
    groups, states = state.get("param_groups"), state.get("state")
    if not isinstance(groups, list) or not isinstance(states, Mapping):
        raise CheckpointError(f"{source}: 'optimizer' is not an optimizer state dict (no param_groups/state)")
    saved_sizes = [len(group.get("params", [])) for group in groups]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if saved_sizes != sizes:
        raise CheckpointError(f"{source}: optimizer holds {saved_sizes} parameters per group, this model trains "
                              f"{sizes}; the checkpoint is from another model configuration")
    name_of = {id(p): n for n, p in model.named_parameters()}
    for saved_group, group in zip(groups, optimizer.param_groups):
        for saved_id, parameter in zip(saved_group["params"], group["params"]):
            for key in MOMENT_KEYS:
                moment = states.get(saved_id, {}).get(key)
                if moment is not None and tuple(moment.shape) != tuple(parameter.shape):
                    raise CheckpointError(
                        f"{source}: optimizer state #{saved_id} ({key} {tuple(moment.shape)}) does not fit parameter "
                        f"{name_of.get(id(parameter), '?')} {tuple(parameter.shape)}: parameter order differs")


def legacy_parameter_order(names: list[str]) -> list[str]:
    """``names`` (in the current order) as listed before the reorder: in every attention block (a prefix owning
    ``<prefix>.mha.*``) the feed-forward parameters came first, then the ``mha`` ones."""
    blocks = {name.split(".mha.")[0] + "." for name in names if ".mha." in name}

    def block_of(name: str) -> str | None:
        return next((prefix for prefix in blocks if name.startswith(prefix)), None)

    ordered: list[str] = []
    index = 0
    while index < len(names):
        block = block_of(names[index])
        end = index + 1
        while block is not None and end < len(names) and block_of(names[end]) == block:
            end += 1
        run = names[index:end]
        attention = [n for n in run if block is not None and n.startswith(f"{block}mha.")]
        ordered += [n for n in run if n not in attention] + attention
        index = end
    return ordered


def upgrade_legacy_optimizer_state(checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer,
                                   model: torch.nn.Module) -> None:
    """Renumber the optimizer state of one of our checkpoints written before the reorder (no ``parameter_order``
    entry, moments not shaped like the parameters at their positions) so that each state sits at its parameter's
    current position. Reference checkpoints, and unmarked ones that already fit, are left alone."""
    if is_reference_layout(checkpoint) or checkpoint.get(PARAMETER_ORDER_KEY) == PARAMETER_ORDER:
        return
    state = checkpoint.get("optimizer")
    if not isinstance(state, Mapping) or len(optimizer.param_groups) != 1:
        return
    try:
        check_optimizer_state(state, optimizer, model, "checkpoint")
        return
    except CheckpointError:
        pass
    name_of = {id(p): n for n, p in model.named_parameters()}
    current = [name_of[id(p)] for p in optimizer.param_groups[0]["params"]]
    position = {name: index for index, name in enumerate(current)}
    saved = state.get("state", {})
    renumbered = {position[name]: saved[old] for old, name in enumerate(legacy_parameter_order(current))
                  if old in saved}
    checkpoint["optimizer"] = {**state, "state": renumbered}


def to_reference_layout(checkpoint: Mapping[str, Any], source: str) -> dict[str, Any]:
    """One of our training checkpoints in the reference's layout (``module.`` keys, no ``args``), so that the
    reference's ``main.py --checkpoint_path`` resumes it."""
    if is_reference_layout(checkpoint):
        return dict(checkpoint)
    if checkpoint.get(PARAMETER_ORDER_KEY) != PARAMETER_ORDER:
        raise CheckpointError(f"{source}: written before the parameter reorder (or not a training checkpoint); "
                              "resume it here for one epoch first, then export the new checkpoint")
    missing = [key for key in REFERENCE_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{source}: not a training checkpoint, it lacks {missing}")
    converted = {key: checkpoint[key] for key in REFERENCE_KEYS}
    converted["model"] = {f"module.{name}": value for name, value in checkpoint["model"].items()}
    return converted


def main(argv: list[str] | None = None) -> int:
    """``python -m training.reference_checkpoint OURS.pt OUT.pt``: export for the reference's trainer."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Write one of our training checkpoints in the reference's layout")
    parser.add_argument("source", help="a checkpoint.pt written by this repository's trainer")
    parser.add_argument("output", help="where to write the reference-layout checkpoint")
    args = parser.parse_args(argv)
    try:
        converted = to_reference_layout(read_training_checkpoint(args.source), args.source)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.save(converted, args.output)
    print(f"wrote {args.output} (epoch {converted['epoch']}, iteration {converted['iteration']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
