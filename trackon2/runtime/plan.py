"""What one frame step does, decided up front on the host so that the step never reads values back from a GPU."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trackon2.model.memory import QueryMemory
from trackon2.model.trackon import Columns


@dataclass(frozen=True)
class StepPlan:
    """``start``: columns where a query starts in some video (None: none starts); ``decode``: columns active in
    some video (None: nothing to track); ``all_active``: every decoded query is active in every video, so no query
    mask is needed; ``empty_slots``: leading memory slots that are empty for every decoded query (their keys are
    masked, so leaving them out is exact)."""

    start: Columns | None
    decode: Columns | None
    all_active: bool
    empty_slots: int = 0

    @staticmethod
    def _columns(flags: torch.Tensor, device: torch.device) -> Columns | None:
        """Columns where ``flags`` (B, N) is set in some row: all (a slice), some (indices), or none (None)."""
        any_row = flags.any(0)
        if bool(any_row.all()):
            return slice(None)
        if not bool(any_row.any()):
            return None
        return any_row.nonzero(as_tuple=True)[0].to(device)

    @staticmethod
    def _uniform(active: torch.Tensor) -> bool:
        """Whether each query is active in every batch element or in none."""
        return bool((active.all(0) | ~active.any(0)).all())

    @classmethod
    def from_masks(cls, starting: torch.Tensor, active: torch.Tensor) -> "StepPlan":
        """The plan read from (B, N) device masks (this reads them back: it synchronises a GPU)."""
        return cls(cls._columns(starting, starting.device), cls._columns(active, active.device),
                   cls._uniform(active))

    @classmethod
    def from_times(cls, times: torch.Tensor, t: int, memory_size: int, device: torch.device,
                   skip_empty_slots: bool = False) -> "StepPlan":
        """The plan of frame ``t`` from the queries' start frames ``times`` (B, N) held on the host.

        A query started at frame s has been written into its memory t - s times before frame t, so by the
        memory's rule (``QueryMemory.leading_empty_slots``) the first slots are empty for every query while the
        earliest active query's memory is not yet full. ``skip_empty_slots`` leaves them out (the runtime does so
        on the CPU only: on a GPU the saving is small and a sequence length that changes every frame makes each
        step's shapes new to the kernels and the memory allocator).
        """
        active = times <= t
        empty = 0
        if skip_empty_slots and bool(active.any()):
            empty = QueryMemory.leading_empty_slots(memory_size, t - int(times[active].min()))
        return cls(cls._columns(times == t, device), cls._columns(active, device), cls._uniform(active), empty)
