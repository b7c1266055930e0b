"""Final numbers of an evaluation: averaging per-video results, printing them, writing them as JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

from trackon2.evaluation.datasets import TAPVID_DATASETS
from trackon2.evaluation.evaluator import VideoResult
from trackon2.evaluation.metrics import THRESHOLDS, MetricAccumulator

# The final table's TAP-Vid rows: key in the results, label.
TAPVID_FINAL_LABELS: dict[str, str] = {
    "aj": "AJ",
    "delta_avg": "delta_avg",
    "oa": "OA",
    **{f"delta_{t}": f"delta_{t}" for t in THRESHOLDS},
}
EVALUATED_LABEL, SKIPPED_LABEL = "videos evaluated", "videos skipped"


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
    """A summary of the skipped videos: how many, then one line per video with its number (from 1, as the
    per-video lines), name and reason."""
    if not skipped:
        return []
    lines = [f"Skipped {len(skipped)} of {total} video(s) that could not be evaluated:"]
    lines += [f"  video {r.index + 1} ({r.name}): {r.error}" for r in skipped]
    return lines


def summary(dataset_name: str, final: dict[str, float] | None, evaluated: int, skipped: int) -> dict[str, float]:
    """The final table as label -> value: the metrics (percent, except PointOdyssey's median_l2 distances; on
    TAP-Vid AJ, delta_avg, OA and each delta threshold), then how many videos were evaluated and skipped."""
    final = final or {}
    if dataset_name in TAPVID_DATASETS and final:
        rows: dict[str, float] = {label: final[key] for key, label in TAPVID_FINAL_LABELS.items()}
    else:
        rows = dict(final)
    return {**rows, EVALUATED_LABEL: evaluated, SKIPPED_LABEL: skipped}


def final_lines(dataset_name: str, final: dict[str, float]) -> list[str]:
    """``label: value`` rows, labels right-aligned so that the values form one column (metrics with 2 decimals)."""
    rows = {TAPVID_FINAL_LABELS.get(key, key) if dataset_name in TAPVID_DATASETS else key: value
            for key, value in final.items()}
    width = max(map(len, rows), default=0)
    return [f"{label:>{width}}: {value if isinstance(value, int) else f'{value:.2f}'}" for label, value in rows.items()]


def summary_lines(dataset_name: str, table: dict[str, float]) -> list[str]:
    """The final table as printed at the end of an evaluation."""
    return [f"Final results ({dataset_name}):", *final_lines("", table)]


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
    """Every per-video and final number of ``accumulator``, the final table (``summary``, as printed), the skipped
    videos and why (``index`` is the dataset index, from 0), plus run information in ``extra``."""
    skipped = list(skipped)
    numbers = accumulator.to_dict() if len(accumulator) else {"num_videos": 0, "videos": [], "final": None}
    payload = {"dataset": dataset_name, **extra, **numbers,
               "summary": summary(dataset_name, numbers["final"], len(accumulator), len(skipped)),
               "skipped": [{"index": r.index, "name": r.name, "reason": r.error} for r in skipped]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_json_safe(payload), indent=2) + "\n")
    os.replace(temporary, path)
