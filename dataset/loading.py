"""Reproducible, distributed-ready data loading helpers.

Randomness model: a dataset item draws one 63-bit seed from torch's RNG (``item_rng``) and does all of its own
sampling and augmentation with a numpy ``Generator`` built from it. In the main process torch's RNG follows
``torch.manual_seed``; in a DataLoader worker it is seeded by PyTorch with ``base_seed + worker_id``, where
``base_seed`` comes from the loader's ``generator``. So a loader built with ``make_dataloader(..., seed=s)`` yields
the same batches for the same ``s``, number of workers and epoch, and different epochs differ (with
``num_workers=0`` the items follow the global ``torch.manual_seed`` instead).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


def item_rng() -> np.random.Generator:
    """A fresh numpy Generator seeded from torch's (per-worker) RNG."""
    return np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,)).item()))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy's and Python's global RNGs from the worker's torch seed, for code that uses
    them."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU torch Generator seeded with ``seed`` (the DataLoader's source of worker base seeds)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def make_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    shuffle: bool,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """A seeded DataLoader; with ``world_size > 1`` it shards the data with a ``DistributedSampler`` (call
    ``loader.sampler.set_epoch(epoch)`` every epoch, as with any distributed sampler)."""
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=make_generator(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=make_generator(seed),
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
