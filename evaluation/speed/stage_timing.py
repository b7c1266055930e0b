"""Per-stage wall time of Track-On2, measured around the model's existing sub-calls (numerics untouched).

Stages are named groups of the tracker's submodules (timed with forward hooks) and methods (timed by wrapping
the bound method on the instance). Nothing is timed, and on CUDA nothing is synchronised, unless a
``StageTimer`` is attached. The stage names follow the speed profile of issue 10.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

import torch
import torch.nn as nn

# stage -> attribute names on TrackOn2 (modules are hooked, methods wrapped); absent names are skipped.
STAGES: dict[str, tuple[str, ...]] = {
    "vit_adapter_fpn": ("backbone", "fpn"),
    "feature_query_attention_head": ("feature_attention", "query_attention", "projection1", "projection2",
                                     "prediction_head"),
    "memory_attention": ("memory_attention",),
    "multiscale_correlation": ("multiscale_correlation", "correlation_basis"),
    "reranking": ("reranking_head",),
}


class StageTimer:
    """Accumulates milliseconds per stage while attached to a model; ``detach`` restores it exactly."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.model = model
        self.device = device
        self.totals_ms: dict[str, float] = defaultdict(float)
        self._handles: list[Any] = []
        self._wrapped: list[str] = []
        self._started: dict[str, float] = {}

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _begin(self, stage: str) -> None:
        self._started[stage] = self._now()

    def _end(self, stage: str) -> None:
        self.totals_ms[stage] += (self._now() - self._started.pop(stage)) * 1000.0

    def _wrap_method(self, name: str, stage: str) -> None:
        method: Callable[..., Any] = getattr(self.model, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._begin(stage)
            try:
                return method(*args, **kwargs)
            finally:
                self._end(stage)

        setattr(self.model, name, timed)
        self._wrapped.append(name)

    def _hook_module(self, module: nn.Module, stage: str) -> None:
        self._handles.append(module.register_forward_pre_hook(lambda *_: self._begin(stage)))
        self._handles.append(module.register_forward_hook(lambda *_: self._end(stage)))

    def attach(self) -> "StageTimer":
        for stage, names in STAGES.items():
            for name in names:
                target = getattr(self.model, name, None)
                if isinstance(target, nn.ModuleList):
                    for module in target:
                        self._hook_module(module, stage)
                elif isinstance(target, nn.Module):
                    self._hook_module(target, stage)
                elif callable(target):
                    self._wrap_method(name, stage)
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        for name in self._wrapped:
            delattr(self.model, name)
        self._handles.clear()
        self._wrapped.clear()

    def __enter__(self) -> "StageTimer":
        return self.attach()

    def __exit__(self, *_: Any) -> None:
        self.detach()

    def reset(self) -> None:
        self.totals_ms.clear()

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        """Mean milliseconds per frame for every stage (zero for stages that never ran)."""
        return {stage: self.totals_ms.get(stage, 0.0) / max(frames, 1) for stage in STAGES}
