"""Per-stage time of Track-On2's frame step, read from the profiler ranges the model marks (``model.stages``).

Nothing in the model is wrapped or replaced: while a ``StageTimer`` is active, ``torch.profiler`` records the
ranges, and the timer sums each stage's time (host time on the CPU, device time on CUDA). Asking for a stage that
the model does not mark is an error.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import torch

from trackon2.model.stages import RANGE_PREFIX, STAGES


class StageTimer:
    """Accumulates milliseconds per stage of everything run while it is entered (``with StageTimer(...)``)."""

    def __init__(self, device: torch.device, stages: Sequence[str] = STAGES) -> None:
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise KeyError(f"unknown stage(s) {unknown}; the model marks {list(STAGES)}")
        self.device = device
        self.stages = tuple(stages)
        self.totals_ms: dict[str, float] = defaultdict(float)
        self._profile: torch.profiler.profile | None = None

    def __enter__(self) -> "StageTimer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Record from now on."""
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profile = torch.profiler.profile(activities=activities)
        self._profile.start()

    def stop(self) -> None:
        """Stop recording and add the recorded stages to ``totals_ms``."""
        profile, self._profile = self._profile, None
        profile.stop()
        self.add(profile)

    def add(self, profile: torch.profiler.profile) -> None:
        """Add the stages recorded by a finished ``profile`` to ``totals_ms``."""
        for event in profile.key_averages():
            if not event.key.startswith(RANGE_PREFIX):
                continue
            stage = event.key[len(RANGE_PREFIX):]
            if stage in self.stages:
                micros = event.device_time_total if self.device.type == "cuda" else event.cpu_time_total
                self.totals_ms[stage] += micros / 1000.0

    def reset(self) -> None:
        self.totals_ms.clear()

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        """Mean milliseconds per frame for every stage (zero for stages that never ran)."""
        return {stage: self.totals_ms.get(stage, 0.0) / max(frames, 1) for stage in self.stages}
