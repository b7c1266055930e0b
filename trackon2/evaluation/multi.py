"""Several trackers and ensembles scored on the same videos, one video at a time, under one benchmark's rules.

For each video the trackers run (or their cached predictions are read), then each ensemble chooses among the
trackers listed before it; every prediction is scored with the benchmark's metrics. A video's result holds every
label's metrics under ``"<label>/<metric>"`` (``split_metrics`` undoes that), so results are saved, resumed and
gathered across processes as single-tracker ones are. A video that any tracker cannot process is skipped for all,
so the averages of all labels cover the same videos.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch

from trackon2.dataset.eval_sample import EvalSample
from trackon2.evaluation.datasets import Benchmark, EvalDataset, benchmark
from trackon2.evaluation.evaluator import BadVideoError, VideoResult, score_videos
from trackon2.evaluation.lineup import TrackerSpec
from trackon2.evaluation.prediction_cache import PredictionCache
from trackon2.evaluation.trackers import ensemble_for_video, tracker_identity

SEPARATOR = "/"


def split_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"a/aj": 1, "b/aj": 2}`` -> ``{"a": {"aj": 1}, "b": {"aj": 2}}`` (labels in order of appearance)."""
    by_label: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        label, _, name = key.partition(SEPARATOR)
        by_label.setdefault(label, {})[name] = value
    return by_label


def predict_video(specs: Sequence[TrackerSpec], built: dict[str, Any], sample: EvalSample, index: int,
                  device: torch.device, cache: PredictionCache | None = None
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(tracks (T, N, 2), visibility (T, N)) on the CPU of every label for one video."""
    if sample.queries.shape[0] == 0:
        raise BadVideoError("no point is visible in any frame, so there is nothing to query")
    video, queries = sample.video[None].to(device), sample.queries[None].to(device)
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    candidates: list[str] = []
    for spec in specs:
        model = built[spec.label]
        if spec.ensemble:
            stacked_tracks = torch.stack([predictions[c][0] for c in candidates])[None].to(device)
            stacked_visibility = torch.stack([predictions[c][1] for c in candidates])[None].to(device)
            tracks, visible = ensemble_for_video(model, index).select(
                video, queries, stacked_tracks, stacked_visibility, gt_tracks=sample.tracks[None].to(device),
                gt_visibility=sample.visible[None].to(device))
            predictions[spec.label] = (tracks[0].detach().cpu().float(), visible[0].detach().cpu().bool())
            continue
        identity = tracker_identity(model)
        cached = cache.load(spec.label, identity, index, sample) if cache is not None else None
        if cached is None:
            try:
                tracks, visible = model(video, queries)
            except ValueError as exc:
                raise ValueError(f"{spec.label}: {exc}") from exc
            cached = (tracks[0].detach().cpu().float(), visible[0].detach().cpu().bool())
            if cache is not None:
                cache.store(spec.label, identity, index, sample, *cached)
        predictions[spec.label] = cached
        candidates.append(spec.label)
    return predictions


def score_video(rules: Benchmark, sample: EvalSample,
                predictions: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Every label's metrics of one video, flattened as ``"<label>/<metric>"``."""
    return {f"{label}{SEPARATOR}{key}": value for label, (tracks, visible) in predictions.items()
            for key, value in rules.score(sample, tracks, visible).items()}


def format_lineup_lines(rules: Benchmark, result: VideoResult, total: int) -> list[str]:
    """The per-video lines: a head, then each label's headline metrics (or the reason the video was skipped)."""
    head = f"{rules.unit} {result.index}/{total} ({result.name})"
    if result.skipped:
        return [f"{head}: skipped: {result.error}"]
    by_label = split_metrics(result.metrics)
    width = max(map(len, by_label))
    lines = [f"{head}:"]
    for label, metrics in by_label.items():
        body = rules.line_separator.join(f"{name}: {metrics[key]:{rules.line_format}}" for name, key in rules.line)
        lines.append(f"  {label.ljust(width)}  {body}")
    return lines


@torch.no_grad()
def evaluate_lineup(
    specs: Sequence[TrackerSpec],
    built: dict[str, Any],
    dataset: EvalDataset,
    dataset_name: str,
    indices: Iterable[int],
    device: torch.device,
    cache: PredictionCache | None = None,
    num_workers: int = 0,
    print_each: bool = True,
    show_progress: bool = True,
    strict: bool = False,
    on_result: Callable[[VideoResult], None] | None = None,
) -> list[VideoResult]:
    """Evaluate every listed tracker and ensemble on ``dataset.sample(i)`` for each i in ``indices``; skipped videos,
    ``strict`` and ``on_result`` behave as in ``evaluation.evaluator.evaluate``."""
    rules = benchmark(dataset_name)
    return score_videos(dataset, dataset_name, indices,
                        lambda sample, index: score_video(rules, sample,
                                                          predict_video(specs, built, sample, index, device, cache)),
                        lambda result: format_lineup_lines(rules, result, len(dataset)), num_workers, print_each,
                        show_progress, strict, on_result)
