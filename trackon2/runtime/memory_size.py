"""The one place that decides the inference memory size M_i, and the only place its defaults are written.

The model is trained with M memory slots; at inference its temporal embedding is resampled to M_i slots
(``TrackOn2.time_embedding``). As the reference: the released configurations use 72; its evaluation uses 24 on
TAP-Vid DAVIS and the config's value elsewhere, its per-epoch evaluation during training 24 on DAVIS and the
training M elsewhere; a value given by the user wins over all of these.
"""

from __future__ import annotations

# A config that sets no M_i gets the reference predictor's default.
DEFAULT_MEMORY_SIZE = 72
# Benchmarks that the reference evaluates with their own memory size.
BENCHMARK_MEMORY_SIZE = {"davis": 24}


def inference_memory_size(config_memory_size: int | None, *, benchmark: str | None = None,
                          override: int | None = None, training_memory_size: int | None = None) -> int:
    """M_i for a run: ``override`` (the user's) if given; else the benchmark's own size; else, during training
    (``training_memory_size``: the model's M), M; else the config's M_i, or ``DEFAULT_MEMORY_SIZE`` if unset."""
    if override is not None:
        size = override
    elif benchmark in BENCHMARK_MEMORY_SIZE:
        size = BENCHMARK_MEMORY_SIZE[benchmark]
    elif training_memory_size is not None:
        size = training_memory_size
    elif config_memory_size is not None:
        size = config_memory_size
    else:
        size = DEFAULT_MEMORY_SIZE
    if size < 1:
        raise ValueError(f"the inference memory size M_i must be at least 1, got {size}")
    return size
