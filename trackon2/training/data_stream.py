"""The training data of one epoch as a stream that can be restarted at any iteration with exactly the same batches.

Every item is keyed by (dataset index, item seed): the data order of an epoch is a function of (seed, epoch, pass)
and an item's augmentation a function of (seed, epoch, pass, index), never of how many items a process or DataLoader
worker drew before. So a run resumed at iteration I of an epoch sees the batches I, I+1, ... of the uninterrupted
run, with any number of workers. When ``iters_per_epoch`` exceeds one pass over the data, passes follow each other
with fresh orders.

A dataset error inside a worker (a ``DatasetFormatError``) travels to the training process as a ``LoadFailure`` and
is raised there as the same one-line error as with ``num_workers=0``.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from trackon2.dataset.errors import DatasetFormatError

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LoadFailure:
    """A dataset item that could not be loaded (carried across worker processes as data, not as an exception)."""

    path: str
    problem: str

    def raise_error(self) -> None:
        raise DatasetFormatError(self.path, self.problem)


def derived_seed(*values: int) -> int:
    """A 63-bit seed determined by ``values`` (non-negative integers), well mixed."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> 1)


class SeededItems(Dataset):
    """``dataset[index]`` drawn with torch's RNG seeded by the key's seed (the caller's RNG state is untouched),
    computed on one thread as in a DataLoader worker (resizing rounds differently on more threads)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.dataset[index]
        except DatasetFormatError as err:
            return LoadFailure(err.path, err.problem)
        finally:
            torch.set_num_threads(threads)


def collate_or_failure(items: list[Any]) -> Any:
    """The default collation, or the first ``LoadFailure`` of the batch."""
    for item in items:
        if isinstance(item, LoadFailure):
            return item
    return default_collate(items)


class EpochSampler(Sampler):
    """This rank's (index, seed) keys for iterations ``start`` .. ``iters - 1`` of ``epoch`` (``batch_size`` keys
    per iteration); call ``set_position`` before iterating."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_pass = (num_items // world_size) // batch_size
        self.epoch, self.start, self.iters = 0, 0, self.batches_per_pass

    def set_position(self, epoch: int, start: int, iters: int) -> None:
        self.epoch, self.start, self.iters = epoch, start, iters

    def _pass_indices(self, pass_number: int) -> list[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, pass_number))
        used = self.batches_per_pass * self.batch_size * self.world_size
        order = torch.randperm(self.num_items, generator=generator)[:used]
        return order[self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_pass = self.batches_per_pass * self.batch_size
        first, end = self.start * self.batch_size, self.iters * self.batch_size
        for pass_number in range(first // per_pass, (end + per_pass - 1) // per_pass):
            indices = self._pass_indices(pass_number)
            for offset in range(max(first - pass_number * per_pass, 0), min(end - pass_number * per_pass, per_pass)):
                index = indices[offset]
                yield index, derived_seed(self.seed, self.epoch, pass_number, index)

    def __len__(self) -> int:
        return max(self.iters - self.start, 0) * self.batch_size


def die_with_parent(signal_number: int) -> None:
    """Ask Linux to send ``signal_number`` to this process when its parent exits (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0)
    except (OSError, AttributeError):
        return


def init_worker(worker_id: int) -> None:
    """DataLoader worker set-up: leave Ctrl-C to the training process (which finishes the iteration and saves),
    and exit when the training process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)


def make_epoch_loader(dataset: Dataset, sampler: EpochSampler, num_workers: int, pin_memory: bool) -> DataLoader:
    """The DataLoader over ``sampler``'s keys; batches are collated tensors or a ``LoadFailure``."""
    return DataLoader(SeededItems(dataset), batch_size=sampler.batch_size, sampler=sampler, drop_last=True,
                      num_workers=num_workers, collate_fn=collate_or_failure, worker_init_fn=init_worker,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0)
