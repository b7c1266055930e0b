"""The evaluation benchmarks as data: for each name, its reader and the rules the reference evaluates it with.

Every reader gives ``EvalSample``s (``reader.sample(i)``, ``reader.name(i)``, ``len(reader)``), so the evaluator
is one loop for all of them; each is built with ``check_items=False``, so that a malformed video fails when it is
read (and is skipped) instead of stopping the whole set. What differs between benchmarks is in ``BENCHMARKS``: the
reader, whether query points may lie outside the frame (Dynamic Replica; EgoPoints, whose queries are every track's
frame-0 position), the TAP-Vid query mode ('first'; 'strided' on request), the metrics and the per-video line. The
inference memory size of each benchmark is decided by ``runtime.memory_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Protocol

import torch

from trackon2.dataset.eval_sample import EvalSample
from trackon2.dataset.tapvid_queries import QUERY_MODES
from trackon2.evaluation.ego_points_metrics import compute_ego_points_metrics
from trackon2.evaluation.metrics import (
    compute_dynamic_replica_metrics,
    compute_point_odyssey_metrics,
    compute_tapvid_metrics,
    tapvid_video_summary,
)

# Query sampling of every TAP-Vid reader in the reference: the first visible point of each track.
TAPVID_QUERY_MODE = "first"


class EvalDataset(Protocol):
    """What the evaluator reads: ``len(reader)`` videos, each a ``sample`` with a ``name``."""

    def __len__(self) -> int: ...

    def name(self, index: int) -> str: ...

    def sample(self, index: int) -> EvalSample: ...


Scorer = Callable[[EvalSample, torch.Tensor, torch.Tensor], dict[str, float]]


def score_tapvid(sample: EvalSample, tracks: torch.Tensor, visible: torch.Tensor,
                 query_mode: str = TAPVID_QUERY_MODE) -> dict[str, float]:
    """TAP-Vid metrics (AJ, delta_avg, OA, ...) of predicted tracks (T, N, 2) and visibility (T, N)."""
    metrics = compute_tapvid_metrics(
        sample.queries[None][..., [0, 2, 1]].cpu().numpy(),  # (t, x, y) -> the metric's (t, y, x)
        (~sample.visible).T[None].cpu().numpy(),
        sample.tracks.permute(1, 0, 2)[None].cpu().numpy(),
        (~visible.bool()).T[None].cpu().numpy(),
        tracks.float().permute(1, 0, 2)[None].cpu().numpy(),
        query_mode,
    )
    return tapvid_video_summary(metrics)


def score_dynamic_replica(sample: EvalSample, tracks: torch.Tensor, visible: torch.Tensor) -> dict[str, float]:
    """Dynamic Replica metrics (accuracy, accuracy_vis/_occ, survival) of predicted tracks (T, N, 2)."""
    height, width = sample.size
    return compute_dynamic_replica_metrics(tracks[None].cpu(), sample.tracks[None], sample.visible[None], height,
                                           width)


def score_point_odyssey(sample: EvalSample, tracks: torch.Tensor, visible: torch.Tensor) -> dict[str, float]:
    """PointOdyssey metrics (d_avg, d_vis_avg, survival, median_l2, ...) of predicted tracks (T, N, 2)."""
    height, width = sample.size
    return compute_point_odyssey_metrics(tracks[None].cpu(), sample.tracks[None], sample.visible[None].float(),
                                         sample.valid[None].float(), height, width)


def score_ego_points(sample: EvalSample, tracks: torch.Tensor, visible: torch.Tensor) -> dict[str, float]:
    """EgoPoints metrics (delta_avg, delta*, MTE, OA, OOVA, IVA, re-identification) of predicted tracks (T, N, 2)."""
    height, width = sample.size
    flags = {key: value[None] for key, value in sample.annotations.items()}
    return compute_ego_points_metrics(tracks[None].cpu(), visible[None].cpu(), sample.tracks[None], flags["visibility"],
                                      flags["valids"], flags["vis_valids"], flags["out_of_view"], flags["occluded"],
                                      height, width)


@dataclass(frozen=True)
class Benchmark:
    """How one benchmark is read and evaluated."""

    build: Callable[[str], EvalDataset]  # the reader over a file or folder
    score: Scorer
    line: tuple[tuple[str, str], ...]  # (label, metric key) pairs of the per-video line
    line_format: str = ".2f"
    line_separator: str = ", "
    unit: str = "Video"  # how the per-video line names a video
    allow_outside_queries: bool = False
    query_mode: str | None = None


def _tapvid(name: str, query_mode: str = TAPVID_QUERY_MODE) -> Callable[[str], EvalDataset]:
    def build(path: str) -> EvalDataset:
        from trackon2.dataset.tapvid import TAPVid

        return TAPVid(None, data_root=path, dataset_type=name, query_mode=query_mode, check_items=False)

    return build


def _point_odyssey(path: str) -> EvalDataset:
    from trackon2.dataset.point_odyssey import PointOdysseyDataset

    return PointOdysseyDataset(path, "test", 256, check_items=False)


def _ego_points(path: str) -> EvalDataset:
    from trackon2.dataset.ego_points import EgoPointsDataset

    return EgoPointsDataset(path)


def _dynamic_replica(path: str) -> EvalDataset:
    from trackon2.dataset.dynamic_replica import DynamicReplicaDataset

    return DynamicReplicaDataset(path, sample_len=300, only_first_n_samples=1, check_items=False)


_TAPVID_LINE = (("AJ", "aj"), ("delta_avg", "delta_avg"), ("OA", "oa"))


def _tapvid_benchmark(name: str) -> Benchmark:
    return Benchmark(_tapvid(name), score_tapvid, _TAPVID_LINE, query_mode=TAPVID_QUERY_MODE)


BENCHMARKS: dict[str, Benchmark] = {
    "davis": _tapvid_benchmark("davis"),
    "kinetics": _tapvid_benchmark("kinetics"),
    "robotap": _tapvid_benchmark("robotap"),
    "rgb_stacking": _tapvid_benchmark("rgb_stacking"),
    "point_odyssey": Benchmark(
        _point_odyssey, score_point_odyssey,
        tuple((key, key) for key in ("d_avg", "d_vis_avg", "survival", "median_l2", "median_vis_l2")),
        line_format=".1f", line_separator="    ", unit="Sequence"),
    "dynamic_replica": Benchmark(
        _dynamic_replica, score_dynamic_replica,
        (("delta_avg", "accuracy"), ("delta_vis", "accuracy_vis"), ("delta_occ", "accuracy_occ"),
         ("survival", "survival")),
        unit="Sequence", allow_outside_queries=True),
    "ego_points": Benchmark(
        _ego_points, score_ego_points,
        (("d_avg", "old_d_all_avg"), ("d_avg*", "new_d_all_avg"), ("MTE", "median_l2"), ("OA", "vis_acc")),
        unit="Sequence", allow_outside_queries=True),
}
DATASETS = tuple(BENCHMARKS)
TAPVID_DATASETS = tuple(name for name, benchmark in BENCHMARKS.items() if benchmark.query_mode is not None)


def benchmark(name: str, query_mode: str | None = None) -> Benchmark:
    """The rules of benchmark ``name``; an unknown name is a ValueError listing the known ones.

    ``query_mode`` ('first' or 'strided', TAP-Vid only; None: the benchmark's own, 'first') picks the TAP-Vid
    protocol: its query sampling and its scored frames."""
    if name not in BENCHMARKS:
        raise ValueError(f"Unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    rules = BENCHMARKS[name]
    if query_mode is None or query_mode == rules.query_mode:
        return rules
    if rules.query_mode is None:
        raise ValueError(f"query mode {query_mode!r} applies to the TAP-Vid datasets only "
                         f"({', '.join(TAPVID_DATASETS)}), not {name}")
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query mode must be one of {', '.join(QUERY_MODES)}, got {query_mode!r}")
    return replace(rules, build=_tapvid(name, query_mode), score=partial(score_tapvid, query_mode=query_mode),
                   query_mode=query_mode)


def build_dataset(name: str, path: str, query_mode: str | None = None) -> EvalDataset:
    """The reader of benchmark ``name`` over the file or folder ``path`` (TAP-Vid: with ``query_mode``)."""
    return benchmark(name, query_mode).build(path)
