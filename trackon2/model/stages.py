"""Names of the stages of a frame step, marked as profiler ranges so that tools can time them from outside.

A range costs a few microseconds when no profiler runs; ``evaluation.speed.stage_timing`` reads them.
"""

from __future__ import annotations

import contextlib

import torch

STAGES = ("vit_adapter_fpn", "feature_query_attention_head", "memory_attention", "multiscale_correlation",
          "reranking")
RANGE_PREFIX = "trackon2::"


def stage(name: str) -> contextlib.AbstractContextManager:
    """A profiler range for one of ``STAGES``."""
    return torch.profiler.record_function(RANGE_PREFIX + name)
