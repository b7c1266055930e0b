"""What the online tracker carries from frame to frame for B videos and N queries."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trackon2.model.memory import QueryMemory


@dataclass
class TrackerState:
    """Per-query state: start features, memory, and whether each query has started."""

    q_init: torch.Tensor  # (B, N, D) query features sampled on their start frame
    memory: QueryMemory  # (B, N, M_i slots, D)
    started: torch.Tensor  # (B, N) bool

    @classmethod
    def empty(cls, batch: int, num_queries: int, dim: int, memory_size: int, like: torch.Tensor,
              memory_class: type[QueryMemory] = QueryMemory) -> "TrackerState":
        """No query started yet, with the dtype and device of ``like``."""
        q_init = like.new_zeros(batch, num_queries, dim)
        empty = QueryMemory.empty_like(batch, num_queries, memory_size, q_init)
        return cls(q_init, memory_class(empty.features, empty.empty), torch.zeros_like(q_init[..., 0],
                                                                                       dtype=torch.bool))

    def extend(self, other: "TrackerState") -> None:
        """Append ``other``'s queries (same batch, memory size and dtype) after this state's."""
        self.q_init = torch.cat([self.q_init, other.q_init], dim=1)
        self.started = torch.cat([self.started, other.started], dim=1)
        self.memory.replace(torch.cat([self.memory.features, other.memory.features], dim=1),
                            torch.cat([self.memory.empty, other.memory.empty], dim=1))

    def select(self, columns: torch.Tensor) -> None:
        """Keep only the queries at ``columns`` (a long index over N), in that order."""
        self.q_init = self.q_init[:, columns]
        self.started = self.started[:, columns]
        self.memory.replace(self.memory.features[:, columns], self.memory.empty[:, columns])

    def fill_memory(self, features: torch.Tensor) -> None:
        """Start with every memory slot full of ``features`` (B, N, M_i, D): the steady state, for timing."""
        self.memory.replace(features.to(self.memory.features), torch.zeros_like(self.memory.empty))
