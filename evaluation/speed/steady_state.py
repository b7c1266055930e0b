"""Steady-state timing: start a predictor's streams with every memory slot already filled.

A clip that starts with an empty memory is cheaper for its first M_i frames (empty slots are skipped), so
per-frame costs at a given M_i are measured with the memory full from frame 0. Works on any checkout of this
repository whose model has ``init_state`` (the comparison script applies it to the baseline too).
"""

from __future__ import annotations

import dataclasses

import torch

MEMORY_SEED = 2


def fill_memory_at_start(predictor: torch.nn.Module) -> None:
    """Make ``predictor.model.init_state`` return states whose memory is full of seeded random features (the same
    for every clip).

    Only this model instance changes. Where the model skips empty memory slots (``StepPlan.empty_slots``), its
    ``step`` gets plans with that skip turned off: here no slot is empty.
    """
    import model.trackon as trackon

    model = predictor.model
    plain_init = model.init_state
    drawn: dict[tuple, torch.Tensor] = {}

    def full_init(batch: int, num_queries: int, like: torch.Tensor):
        state = plain_init(batch, num_queries, like)
        key = (tuple(state.memory.shape), state.memory.dtype, state.memory.device)
        if key not in drawn:  # drawn once per shape, so that timed clips do not pay for the random numbers
            generator = torch.Generator().manual_seed(MEMORY_SEED)
            drawn[key] = torch.randn(state.memory.shape, generator=generator).to(state.memory)
        state.memory = drawn[key].clone()
        state.memory_mask = torch.zeros_like(state.memory_mask)
        return state

    model.init_state = full_init
    if getattr(trackon, "StepPlan", None) is None:
        return
    plain_step = model.step

    def step_with_full_memory(*args, **kwargs):
        plan = kwargs.pop("plan", args[5] if len(args) > 5 else None)
        if plan is not None:
            plan = dataclasses.replace(plan, empty_slots=0)
        return plain_step(*args[:5], plan=plan, **kwargs)

    model.step = step_with_full_memory
