"""Final numbers of an evaluation: averaging per-video results, printing them, writing them as JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

from evaluation.datasets import TAPVID_DATASETS
from evaluation.evaluator import VideoResult
from evaluation.metrics import THRESHOLDS, MetricAccumulator

# The reference prints TAP-Vid finals in this order, under these labels.
TAPVID_FINAL_LABELS: dict[str, str] = {
    "delta_avg": "delta_avg",
    **{f"delta_{t}": f"delta_{t}" for t in THRESHOLDS},
    "aj": "AJ",
    "oa": "OA",
}


def accumulate(results: Iterable[VideoResult]) -> MetricAccumulator:
    """Per-video results of the evaluated (not skipped) videos, sorted by dataset index (so any sharding gives the
    same averages)."""
    accumulator = MetricAccumulator()
    for result in sorted(results, key=lambda r: r.index):
        if not result.skipped:
            accumulator.update(result.name, result.metrics)
    return accumulator


def skipped_videos(results: Iterable[VideoResult]) -> list[VideoResult]:
    """The videos that could not be evaluated, by dataset index."""
    return sorted((r for r in results if r.skipped), key=lambda r: r.index)


def skipped_lines(skipped: list[VideoResult], total: int) -> list[str]:
    """A summary of the skipped videos: how many, then one line per video with its index, name and reason."""
    if not skipped:
        return []
    lines = [f"Skipped {len(skipped)} of {total} video(s) that could not be evaluated:"]
    lines += [f"  video {r.index} ({r.name}): {r.error}" for r in skipped]
    return lines


def final_lines(dataset_name: str, final: dict[str, float], query_mode: str | None = None) -> list[str]:
    """Human-readable final metrics (percent, except PointOdyssey's median_l2 distances); TAP-Vid finals are
    headed by their protocol when ``query_mode`` is given."""
    if dataset_name in TAPVID_DATASETS:
        head = [f"Protocol: queried {query_mode}"] if query_mode else []
        return head + [f"{label}: {final[key]:.2f}" for key, label in TAPVID_FINAL_LABELS.items()]
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


def write_json(path: str | Path, dataset_name: str, accumulator: MetricAccumulator, extra: dict[str, object],
               skipped: Iterable[VideoResult] = ()) -> None:
    """Every per-video and final number of ``accumulator``, the skipped videos and why, plus run information in
    ``extra``."""
    numbers = accumulator.to_dict() if len(accumulator) else {"num_videos": 0, "videos": [], "final": None}
    payload = {"dataset": dataset_name, **extra, **numbers,
               "skipped": [{"index": r.index, "name": r.name, "reason": r.error} for r in skipped]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_json_safe(payload), indent=2) + "\n")
    os.replace(temporary, path)
