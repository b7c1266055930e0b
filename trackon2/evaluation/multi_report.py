"""Final numbers of a several-tracker evaluation: per-label averages, the side-by-side table and the JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from trackon2.evaluation.evaluator import VideoResult
from trackon2.evaluation.metrics import MetricAccumulator
from trackon2.evaluation.multi import split_metrics
from trackon2.evaluation.report import _json_safe


def accumulate_by_label(results: Iterable[VideoResult], labels: Sequence[str]) -> dict[str, MetricAccumulator]:
    """Each label's per-video metrics of the evaluated videos, by dataset index (any sharding, same averages)."""
    accumulators = {label: MetricAccumulator() for label in labels}
    for result in sorted(results, key=lambda r: r.index):
        if not result.skipped:
            for label, metrics in split_metrics(result.metrics).items():
                accumulators[label].update(result.name, metrics)
    return accumulators


def final_table(final: dict[str, dict[str, float]], labels: Sequence[str]) -> list[str]:
    """Metrics as rows, labels as columns, two decimals (``-`` where a label has no such metric)."""
    keys = list(dict.fromkeys(key for label in labels for key in final[label]))
    key_width = max(len("metric"), *map(len, keys))
    widths = [max(8, len(label)) for label in labels]
    lines = ["  ".join(["metric".ljust(key_width), *(label.rjust(w) for label, w in zip(labels, widths))])]
    for key in keys:
        cells = [f"{final[label][key]:.2f}" if key in final[label] else "-" for label in labels]
        lines.append("  ".join([key.ljust(key_width), *(cell.rjust(w) for cell, w in zip(cells, widths))]))
    return lines


def write_lineup_json(path: str | Path, dataset_name: str, results: Iterable[VideoResult], labels: Sequence[str],
                      extra: dict[str, object], skipped: Iterable[VideoResult] = ()) -> None:
    """Every video's metrics by label, each label's final averages, the skipped videos, plus ``extra``."""
    evaluated = sorted((r for r in results if not r.skipped), key=lambda r: r.index)
    accumulators = accumulate_by_label(evaluated, labels)
    payload = {
        "dataset": dataset_name,
        **extra,
        "num_videos": len(evaluated),
        "videos": [{"index": r.index, "name": r.name, "metrics": split_metrics(r.metrics)} for r in evaluated],
        "final": {label: acc.results() for label, acc in accumulators.items()} if evaluated else None,
        "skipped": [{"index": r.index, "name": r.name, "reason": r.error} for r in skipped],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_json_safe(payload), indent=2) + "\n")
    os.replace(temporary, path)
