"""Process-group setup for ``torchrun`` (NCCL on GPUs, gloo on CPU) shared by training and evaluation: the rank's
device, barriers, broadcast, index sharding, gathering, seeding and rank-0-only printing."""

from __future__ import annotations

import builtins
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

# The reference waits up to 3000 s at a barrier (rank 0 evaluates while the others wait).
PROCESS_GROUP_TIMEOUT = timedelta(seconds=3000)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1) if not joined yet, pick this rank's device.

    ``device``: "cuda" / "cpu" to force one; default CUDA when available. A plain ``python main.py`` runs as a single
    process without a process group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
    else:
        target = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=PROCESS_GROUP_TIMEOUT,
                                **({"device_id": target} if use_cuda else {}))
    return DistInfo(rank, world_size, local_rank, target)


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value, info: DistInfo):
    """``value`` from rank 0, on every rank."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(num_items: int, info: DistInfo) -> list[int]:
    """The item indices this rank handles: every world_size-th index, starting at its rank."""
    return list(range(info.rank, num_items, info.world_size))


def gather(items: list[Any], info: DistInfo) -> list[Any]:
    """Concatenation of every rank's list, on every rank (a copy of the input list when not distributed)."""
    if not info.distributed:
        return list(items)
    gathered: list[list[Any] | None] = [None] * info.world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in (part or [])]


def fix_random_seeds(seed: int) -> None:
    """Seed Python, numpy and torch (all devices); deterministic cuDNN as the reference."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def silence_non_main(info: DistInfo):
    """Let only rank 0 print (``print(..., force=True)`` still prints anywhere), as the reference. Returns a
    function that restores ``print``."""
    original = builtins.print
    if info.is_main:
        return lambda: None

    def quiet_print(*args, **kwargs):
        if kwargs.pop("force", False):
            original(*args, **kwargs)

    builtins.print = quiet_print

    def restore() -> None:
        builtins.print = original

    return restore
