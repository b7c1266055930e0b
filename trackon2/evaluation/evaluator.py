"""Run a predictor over evaluation videos and score each one, as the reference's evaluate_tapvid / _dr / _po: one
loop over ``EvalSample``s for every benchmark, with the benchmark's rules from ``evaluation.datasets``.

A predictor is any callable ``predictor(video, queries) -> (trajectory, visibility)`` with video
(1, T, 3, H, W) float in [0, 255], queries (1, N, 3) as (t, x, y) pixels, trajectory (1, T, N, 2) xy pixels and
visibility (1, T, N) bool -- the interface of ``runtime.predictor.Predictor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from trackon2.dataset.eval_sample import EvalSample
from trackon2.evaluation.datasets import Benchmark, EvalDataset, benchmark

PredictorFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class VideoResult:
    """Metrics of one evaluated video; ``index`` is its position in the dataset. A video that could not be
    evaluated has no metrics and ``error`` says why."""

    index: int
    name: str
    metrics: dict[str, float]
    error: str | None = None

    @property
    def skipped(self) -> bool:
        return self.error is not None


class BadVideoError(ValueError):
    """A video that cannot be evaluated (it is reported and skipped, the other videos are still evaluated)."""


@dataclass(frozen=True)
class _UnreadableItem:
    """Stands in for a dataset item whose loading failed (also across DataLoader worker processes)."""

    reason: str


class _GuardedSamples(Dataset):
    """The samples of ``dataset`` at ``indices``; one that fails to load (a ValueError such as DatasetFormatError)
    becomes an ``_UnreadableItem``, so one broken video does not end the loop over the others."""

    def __init__(self, dataset: EvalDataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> EvalSample | _UnreadableItem:
        try:
            return self.dataset.sample(self.indices[position])
        except ValueError as exc:
            return _UnreadableItem(" ".join(str(exc).split()))


def _as_is(item: Any) -> Any:
    """The DataLoader's collate function: samples are evaluated one at a time, unbatched."""
    return item


def evaluate_sample(predictor: PredictorFn, sample: EvalSample, rules: Benchmark,
                    device: torch.device) -> dict[str, float]:
    """Track ``sample``'s queries through its video and score the result with the benchmark's metrics."""
    if sample.queries.shape[0] == 0:
        raise BadVideoError("no point is visible in any frame, so there is nothing to query")
    tracks, visible = predictor(sample.video[None].to(device), sample.queries[None].to(device))
    return rules.score(sample, tracks[0], visible[0])


def format_video_line(rules: Benchmark, result: VideoResult, total: int) -> str:
    """One per-video progress line in the reference's format, counting videos from 1 (or the reason a video was
    skipped)."""
    head = f"{rules.unit} {result.index + 1}/{total} ({result.name})"
    if result.skipped:
        return f"{head}: skipped: {result.error}"
    body = rules.line_separator.join(f"{label}: {result.metrics[key]:{rules.line_format}}"
                                     for label, key in rules.line)
    return f"{head}: {body}"


def score_one(score: Callable[[EvalSample, int], dict[str, float]], sample: EvalSample | _UnreadableItem,
              index: int, name: str) -> VideoResult:
    """``score(sample, index)`` as a result; an unreadable sample or a ValueError raised on it gives a skipped
    result naming the reason."""
    if isinstance(sample, _UnreadableItem):
        return VideoResult(index, name, {}, sample.reason)
    try:
        return VideoResult(index, name, score(sample, index))
    except ValueError as exc:  # InputError, DatasetFormatError, BadVideoError
        return VideoResult(index, name, {}, " ".join(str(exc).split()))


def score_videos(dataset: EvalDataset, dataset_name: str, indices: Iterable[int],
                 score: Callable[[EvalSample, int], dict[str, float]],
                 lines: Callable[[VideoResult], list[str]], num_workers: int = 0, print_each: bool = True,
                 show_progress: bool = True, strict: bool = False,
                 on_result: Callable[[VideoResult], None] | None = None) -> list[VideoResult]:
    """The one loop over an evaluation's videos: each sample is loaded (in ``num_workers`` workers), scored
    (``score_one``), reported (``lines``, every video with ``print_each``, skipped ones always) and handed to
    ``on_result`` as soon as it exists; with ``strict`` the loop stops after the first skipped video."""
    indices = list(indices)
    loader = DataLoader(_GuardedSamples(dataset, indices), batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=_as_is)
    results = []
    bar = tqdm(loader, desc=dataset_name, unit="video", disable=not show_progress, dynamic_ncols=True)
    for position, sample in enumerate(bar):  # iterating the bar itself lets it reach n/n
        index = indices[position]
        result = score_one(score, sample, index, dataset.name(index))
        if print_each or result.skipped:
            for line in lines(result):
                tqdm.write(line)
        results.append(result)
        if on_result is not None:
            on_result(result)
        if strict and result.skipped:
            break
    bar.close()
    return results


@torch.no_grad()
def evaluate(
    predictor: PredictorFn,
    dataset: EvalDataset,
    dataset_name: str,
    indices: Iterable[int],
    device: torch.device,
    num_workers: int = 0,
    print_each: bool = True,
    show_progress: bool = True,
    strict: bool = False,
    on_result: Callable[[VideoResult], None] | None = None,
    query_mode: str | None = None,
) -> list[VideoResult]:
    """Evaluate ``predictor`` on ``dataset.sample(i)`` for every i in ``indices`` (one video at a time), with the
    rules of benchmark ``dataset_name``.

    A video that cannot be evaluated (unreadable, no visible point, NaN points, no frames, ...) is returned as a
    skipped result naming the reason; with ``strict`` the loop stops after it. ``on_result`` sees every result as
    soon as it exists (the evaluation CLI saves it to disk there). ``query_mode`` picks the TAP-Vid protocol
    ('first' or 'strided'; None: the benchmark's own)."""
    rules = benchmark(dataset_name, query_mode)
    return score_videos(dataset, dataset_name, indices,
                        lambda sample, _index: evaluate_sample(predictor, sample, rules, device),
                        lambda result: [format_video_line(rules, result, len(dataset))], num_workers, print_each,
                        show_progress, strict, on_result)
