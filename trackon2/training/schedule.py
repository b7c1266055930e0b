"""The reference's learning-rate schedule: linear warm-up over 1% of all iterations, then cosine decay to zero,
stepped once per iteration."""

from __future__ import annotations

import torch

WARMUP_FRACTION = 0.01
WARMUP_START_FACTOR = 1e-5


def build_scheduler(optimizer: torch.optim.Optimizer, iters_per_epoch: int, epoch_num: int,
                    min_warmup_steps: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """SequentialLR(LinearLR from 1e-5 x lr, CosineAnnealingLR) over ``iters_per_epoch * epoch_num`` steps.

    As in the reference, the warm-up is ``int(1% of all steps)`` long, but at least ``min_warmup_steps`` (config
    key; 1 by default so that runs under 100 steps also start at 1e-5 x lr; 0 restores the reference, whose runs
    under 100 steps have no warm-up and start at the full lr).
    """
    if iters_per_epoch < 1 or epoch_num < 1:
        raise ValueError(f"need at least one iteration and one epoch, got {iters_per_epoch} x {epoch_num}")
    if min_warmup_steps < 0:
        raise ValueError(f"min_warmup_steps must be 0 or more, got {min_warmup_steps}")
    total = iters_per_epoch * epoch_num
    warmup = max(min_warmup_steps, int(total * WARMUP_FRACTION))
    cosine_steps = max(1, total - warmup)
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cosine_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers=[linear, cosine], milestones=[warmup])
