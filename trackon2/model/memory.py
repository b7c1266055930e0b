"""The per-query memory of Track-On2: a first-in-first-out queue of each query's past decoded features.

Every frame a tracked query writes its decoded feature into the newest slot and the oldest slot falls out; a query
that was not tracked on that frame writes an empty (masked) slot. So after ``w`` writes a memory of ``M`` slots has
its first ``max(M - w, 0)`` slots empty: ``leading_empty_slots`` states that rule, and ``write`` implements it;
the tests check one against the other, so a change of policy cannot leave the runtime's step plan behind.
"""

from __future__ import annotations

import torch


class QueryMemory:
    """The memories of B x N queries: ``features`` (B, N, L, D), oldest slot first, and ``empty`` (B, N, L), True
    where a slot holds nothing. ``first_slot`` > 0 marks a view without the first slots of a memory of
    ``capacity`` slots (``recent``); the slots keep their positions (and temporal embeddings) in it."""

    def __init__(self, features: torch.Tensor, empty: torch.Tensor, capacity: int | None = None,
                 first_slot: int = 0) -> None:
        if features.shape[:3] != empty.shape:
            raise ValueError(f"memory features {tuple(features.shape)} and mask {tuple(empty.shape)} disagree")
        self._features = features
        self._empty = empty
        self.capacity = features.shape[2] + first_slot if capacity is None else capacity
        self.first_slot = first_slot

    @classmethod
    def empty_like(cls, batch: int, num_queries: int, capacity: int, like: torch.Tensor) -> "QueryMemory":
        """An all-empty memory of ``capacity`` slots with the feature width, dtype and device of ``like``."""
        features = like.new_zeros(batch, num_queries, capacity, like.shape[-1])
        empty = torch.ones(batch, num_queries, capacity, dtype=torch.bool, device=like.device)
        return cls(features, empty)

    @property
    def features(self) -> torch.Tensor:
        return self._features

    @property
    def empty(self) -> torch.Tensor:
        return self._empty

    @staticmethod
    def leading_empty_slots(capacity: int, writes: int) -> int:
        """How many first slots are still empty after ``writes`` writes into an all-empty memory."""
        return max(capacity - writes, 0)

    def write(self, newest: torch.Tensor, written: torch.Tensor) -> None:
        """Append one slot: ``newest`` (B, N, D) where ``written`` (B, N) is True, an empty slot elsewhere; the
        oldest slot falls out."""
        written_slot = written.unsqueeze(-1)
        features = torch.where(written_slot, newest.to(self._features.dtype), torch.zeros_like(newest,
                                                                                                dtype=self._features.dtype))
        self._features = self._slide(self._features, features.unsqueeze(2))
        self._empty = self._slide(self._empty, ~written_slot)

    def _slide(self, window: torch.Tensor, newest: torch.Tensor) -> torch.Tensor:
        """``window`` (B, N, L, ...) without its oldest slot, with ``newest`` (B, N, 1, ...) appended."""
        return torch.cat([window[:, :, 1:], newest], dim=2)

    def recent(self, skip: int) -> "QueryMemory":
        """This memory without its first ``skip`` slots (a view, for reading only)."""
        if skip == 0:
            return self
        return QueryMemory(self._features[:, :, skip:], self._empty[:, :, skip:], self.capacity,
                           self.first_slot + skip)

    def columns(self, columns: slice | torch.Tensor) -> "QueryMemory":
        """The memories of the queries at ``columns`` (a slice or a long index over N), for reading."""
        return QueryMemory(self._features[:, columns], self._empty[:, columns], self.capacity, self.first_slot)

    def replace(self, features: torch.Tensor, empty: torch.Tensor) -> None:
        """Hold these (B, N', capacity, D) features and mask from now on (a memory with other queries)."""
        if features.shape[2] != self.capacity or self.first_slot:
            raise ValueError(f"a memory of {self.capacity} slots cannot take {features.shape[2]}")
        self._features = features
        self._empty = empty
