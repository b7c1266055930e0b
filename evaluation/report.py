"""Final numbers of an evaluation: averaging per-video results, printing them, writing them as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from evaluation.evaluator import TAPVID_DATASETS, VideoResult
from utils.eval_utils import THRESHOLDS, MetricAccumulator

# The reference prints TAP-Vid finals in this order, under these labels.
TAPVID_FINAL_LABELS: dict[str, str] = {
    "delta_avg": "delta_avg",
    **{f"delta_{t}": f"delta_{t}" for t in THRESHOLDS},
    "aj": "AJ",
    "oa": "OA",
}


def accumulate(results: Iterable[VideoResult]) -> MetricAccumulator:
    """Per-video results, sorted by dataset index (so any sharding gives the same averages)."""
    accumulator = MetricAccumulator()
    for result in sorted(results, key=lambda r: r.index):
        accumulator.update(result.name, result.metrics)
    return accumulator


def final_lines(dataset_name: str, final: dict[str, float]) -> list[str]:
    """Human-readable final metrics (percent, except PointOdyssey's median_l2 distances)."""
    if dataset_name in TAPVID_DATASETS:
        return [f"{label}: {final[key]:.2f}" for key, label in TAPVID_FINAL_LABELS.items()]
    return [f"{key}: {value:.2f}" for key, value in final.items()]


def _json_safe(value: object) -> object:
    """NaN / inf become null so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str | Path, dataset_name: str, accumulator: MetricAccumulator, extra: dict[str, object]) -> None:
    """Every per-video and final number of ``accumulator`` plus run information in ``extra``."""
    payload = {"dataset": dataset_name, **extra, **accumulator.to_dict()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(payload), indent=2) + "\n")
