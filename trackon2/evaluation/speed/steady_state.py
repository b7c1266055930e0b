"""Steady-state timing: a predictor's streams start with every memory slot already filled.

A clip that starts with an empty memory is cheaper for its first M_i frames (the runtime leaves out slots that
are empty for every query), so per-frame costs at a given M_i are measured with the memory full from frame 0,
through the predictor's public ``memory_filler``.
"""

from __future__ import annotations

import torch

from trackon2.runtime.predictor import Predictor

MEMORY_SEED = 2


def seeded_memory(seed: int = MEMORY_SEED):
    """A memory filler: seeded random features, drawn once per shape (timed clips do not pay for them)."""
    drawn: dict[tuple, torch.Tensor] = {}

    def fill(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (shape, like.dtype, like.device)
        if key not in drawn:
            generator = torch.Generator().manual_seed(seed)
            drawn[key] = torch.randn(shape, generator=generator).to(like)
        return drawn[key]

    return fill


def fill_memory_at_start(predictor: Predictor) -> None:
    """Every stream of ``predictor`` from now on starts with a full memory (the same for every clip)."""
    predictor.memory_filler = seeded_memory()
