"""Optional torch.distributed setup for evaluation under ``torchrun``: index sharding and result gathering."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the (possibly single-process) evaluation."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_type: str) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): nccl on CUDA, gloo otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def shard(num_items: int, ctx: DistContext) -> list[int]:
    """The item indices this rank evaluates: every world_size-th index, starting at its rank."""
    return list(range(ctx.rank, num_items, ctx.world_size))


def gather(items: list[Any], ctx: DistContext) -> list[Any]:
    """Concatenation of every rank's list, on every rank (the input list itself when not distributed)."""
    if not ctx.enabled:
        return list(items)
    gathered: list[list[Any] | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in (part or [])]


def teardown(ctx: DistContext) -> None:
    """Leave the process group if one was joined."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
