"""Run a predictor over evaluation videos and score each one, as the reference's evaluate_tapvid / _dr / _po.

A predictor is any callable ``predictor(video, queries) -> (trajectory, visibility)`` with video
(1, T, 3, H, W) float in [0, 255], queries (1, N, 3) as (t, x, y) pixels, trajectory (1, T, N, 2) xy pixels and
visibility (1, T, N) bool -- the interface of ``model.trackon_predictor.Predictor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dataset.point_odyssey import load_resized_video
from utils.eval_utils import (
    compute_dynamic_replica_metrics,
    compute_point_odyssey_metrics,
    compute_tapvid_metrics,
    tapvid_video_summary,
)

PredictorFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

TAPVID_DATASETS = ("davis", "kinetics", "robotap", "rgb_stacking")
DATASETS = TAPVID_DATASETS + ("point_odyssey", "dynamic_replica")
# Query sampling of every TAP-Vid reader in the reference: the first visible point of each track.
TAPVID_QUERY_MODE = "first"
# The reference evaluates PointOdyssey on frames resized to (H, W) = (384, 512).
POINT_ODYSSEY_SIZE = (384, 512)


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


class _GuardedDataset(Dataset):
    """``dataset`` whose items that fail to load (a ValueError such as DatasetFormatError) become
    ``_UnreadableItem``s, so one broken video does not end the loop over the others."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        try:
            return self.dataset[self.indices[position]]
        except ValueError as exc:
            return _UnreadableItem(" ".join(str(exc).split()))


def evaluate_tapvid_video(predictor: PredictorFn, batch: Any, device: torch.device) -> dict[str, float]:
    """TAP-Vid item (video (1,T,3,H,W), tracks (1,T,N,2) xy, visible (1,T,N), queries (1,N,3) t,y,x)."""
    video, gt_tracks, gt_visible, query_points = batch[:4]
    if query_points.shape[1] == 0:
        raise BadVideoError("no point is visible in any frame, so there is nothing to query")
    queries = query_points.float()[..., [0, 2, 1]]  # (t, y, x) -> (t, x, y)
    pred_tracks, pred_visible = predictor(video.to(device), queries.to(device))
    metrics = compute_tapvid_metrics(
        query_points.cpu().numpy(),
        torch.logical_not(gt_visible.bool()).permute(0, 2, 1).cpu().numpy(),
        gt_tracks.permute(0, 2, 1, 3).cpu().numpy(),
        torch.logical_not(pred_visible.bool()).permute(0, 2, 1).cpu().numpy(),
        pred_tracks.float().permute(0, 2, 1, 3).cpu().numpy(),
        TAPVID_QUERY_MODE,
    )
    return tapvid_video_summary(metrics)


def evaluate_dynamic_replica_video(predictor: PredictorFn, batch: Any, device: torch.device) -> dict[str, float]:
    """Dynamic Replica item (video (1,T,3,H,W), tracks (1,T,N,2) xy, visibility (1,T,N)); queries at frame 0."""
    video, gt_tracks, gt_visible = batch[:3]
    gt_tracks = gt_tracks.float()
    queries = torch.cat([torch.zeros_like(gt_tracks[:, 0, :, :1]), gt_tracks[:, 0]], dim=2)
    pred_tracks, _ = predictor(video.to(device), queries.to(device))
    height, width = video.shape[-2:]
    return compute_dynamic_replica_metrics(pred_tracks.cpu(), gt_tracks, gt_visible, height, width)


def point_odyssey_queries(gt_tracks: torch.Tensor, gt_visible: torch.Tensor) -> torch.Tensor:
    """(1, N, 3) queries (t, x, y) at each track's first visible frame (frame 0 if never visible)."""
    first = torch.argmax((gt_visible > 0).to(torch.uint8), dim=1)[0]  # (N,)
    points = gt_tracks[0, first, torch.arange(gt_tracks.shape[2])]  # (N, 2)
    return torch.cat([first[:, None].float(), points], dim=1)[None]


def evaluate_point_odyssey_video(predictor: PredictorFn, batch: Mapping[str, Any], device: torch.device) -> dict[str, float]:
    """PointOdyssey item: a mapping with rgb_paths (T paths), trajs (1,T,N,2) xy pixels of the original frames,
    visibs and valids (1,T,N). Frames are resized to 384x512 and the tracks scaled to match."""
    video, (original_height, original_width) = load_resized_video(batch["rgb_paths"], POINT_ODYSSEY_SIZE)
    height, width = POINT_ODYSSEY_SIZE
    scale = torch.tensor([width / original_width, height / original_height], dtype=torch.float32)
    gt_tracks = batch["trajs"].float() * scale
    gt_visible, valids = batch["visibs"].float(), batch["valids"].float()
    queries = point_odyssey_queries(gt_tracks, gt_visible)
    pred_tracks, _ = predictor(video.to(device), queries.to(device))
    return compute_point_odyssey_metrics(pred_tracks.cpu(), gt_tracks, gt_visible, valids, height, width)


def add_batch_dim(item: Any) -> Any:
    """Collate one dataset item into a batch of one: tensors gain a leading axis, everything else is kept."""
    if isinstance(item, torch.Tensor):
        return item[None]
    if isinstance(item, Mapping):
        return {key: add_batch_dim(value) for key, value in item.items()}
    if isinstance(item, tuple):
        return tuple(add_batch_dim(value) for value in item)
    return item


VIDEO_EVALUATORS: dict[str, Callable[[PredictorFn, Any, torch.device], dict[str, float]]] = {
    **{name: evaluate_tapvid_video for name in TAPVID_DATASETS},
    "dynamic_replica": evaluate_dynamic_replica_video,
    "point_odyssey": evaluate_point_odyssey_video,
}


def format_video_line(dataset_name: str, result: VideoResult, total: int) -> str:
    """One per-video progress line in the reference's format (or the reason a video was skipped)."""
    m = result.metrics
    if result.skipped:
        label = "Video" if dataset_name in TAPVID_DATASETS else "Sequence"
        return f"{label} {result.index}/{total} ({result.name}): skipped: {result.error}"
    if dataset_name in TAPVID_DATASETS:
        body = f"AJ: {m['aj']:.2f}, delta_avg: {m['delta_avg']:.2f}, OA: {m['oa']:.2f}"
        return f"Video {result.index}/{total} ({result.name}): {body}"
    if dataset_name == "dynamic_replica":
        body = (
            f"delta_avg: {m['accuracy']:.2f}, delta_vis: {m['accuracy_vis']:.2f}, "
            f"delta_occ: {m['accuracy_occ']:.2f}, survival: {m['survival']:.2f}"
        )
        return f"Sequence {result.index}/{total} ({result.name}): {body}"
    body = "    ".join(f"{k}: {m[k]:.1f}" for k in ("d_avg", "d_vis_avg", "survival", "median_l2", "median_vis_l2"))
    return f"Sequence {result.index}/{total} ({result.name}): {body}"


def evaluate_one(evaluate_video: Callable[[PredictorFn, Any, torch.device], dict[str, float]],
                 predictor: PredictorFn, batch: Any, device: torch.device, index: int, name: str) -> VideoResult:
    """Score one loaded item; an unreadable item or a ValueError raised on it gives a skipped result."""
    if isinstance(batch, _UnreadableItem):
        return VideoResult(index, name, {}, batch.reason)
    try:
        return VideoResult(index, name, evaluate_video(predictor, batch, device))
    except ValueError as exc:  # InputError, DatasetFormatError, BadVideoError
        return VideoResult(index, name, {}, " ".join(str(exc).split()))


@torch.no_grad()
def evaluate(
    predictor: PredictorFn,
    dataset: Dataset,
    dataset_name: str,
    indices: Iterable[int],
    device: torch.device,
    num_workers: int = 0,
    name_of: Callable[[int], str] = str,
    print_each: bool = True,
    show_progress: bool = True,
    strict: bool = False,
    on_result: Callable[[VideoResult], None] | None = None,
) -> list[VideoResult]:
    """Evaluate ``predictor`` on ``dataset[i]`` for every i in ``indices`` (one video at a time); ``name_of``
    gives a video's name from its index.

    A video that cannot be evaluated (unreadable, no visible point, NaN points, no frames, ...) is returned as a
    skipped result naming the reason; with ``strict`` the loop stops after it. ``on_result`` sees every result as
    soon as it exists (the evaluation CLI saves it to disk there)."""
    if dataset_name not in VIDEO_EVALUATORS:
        raise ValueError(f"Unknown dataset {dataset_name!r}; expected one of {', '.join(DATASETS)}")
    evaluate_video = VIDEO_EVALUATORS[dataset_name]
    indices = list(indices)
    loader = DataLoader(_GuardedDataset(dataset, indices), batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=add_batch_dim)
    results = []
    bar = tqdm(loader, desc=dataset_name, disable=not show_progress, dynamic_ncols=True)
    for index, batch in zip(indices, bar):
        result = evaluate_one(evaluate_video, predictor, batch, device, index, name_of(index))
        if print_each or result.skipped:
            tqdm.write(format_video_line(dataset_name, result, len(dataset)))
        results.append(result)
        if on_result is not None:
            on_result(result)
        if strict and result.skipped:
            break
    bar.close()
    return results
