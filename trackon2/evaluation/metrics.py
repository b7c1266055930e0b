"""Point-tracking metrics: TAP-Vid (AJ, <delta^x_avg, OA), Dynamic Replica and PointOdyssey, plus a per-video
accumulator.

``compute_tapvid_metrics`` follows the TAP-Vid definition of google-deepmind/tapnet exactly (same masks, same
operation order, so the same floating-point results). The Dynamic Replica and PointOdyssey metrics follow the
Track-On2 reference evaluator (``evaluate_dr`` / ``evaluate_po``), which computes them in float32 torch with the
co-tracker / PIPs conventions: coordinates rescaled to a 256x256 raster, thresholds 1..16 px, survival at 50 px.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

THRESHOLDS: tuple[int, ...] = (1, 2, 4, 8, 16)
SURVIVAL_THRESHOLD = 50.0
EPS = 1e-6


# --------------------------------------------------------------------------------------------------- TAP-Vid


def evaluation_mask(query_points: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """Boolean (B, N, T) mask of the frames scored for each query.

    'first': only frames strictly after the query frame (earlier frames are known to be occluded).
    'strided': every frame except the query frame itself.
    """
    eye = np.eye(num_frames, dtype=np.int32)
    if query_mode == "first":
        table = np.cumsum(eye, axis=1) - eye
    elif query_mode == "strided":
        table = 1 - eye
    else:
        raise ValueError(f"Unknown query mode {query_mode}")
    query_frame = np.round(query_points[..., 0]).astype(np.int32)
    return table[query_frame] > 0


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics per video (shape (B,)), or per track (B, N) with ``get_trackwise_metrics``.

    Inputs are in raster coordinates (the paper uses 256x256): query_points (B, N, 3) as (t, y, x);
    gt_occluded / pred_occluded (B, N, T) bool, True = occluded; gt_tracks / pred_tracks (B, N, T, 2) as (x, y).
    Returns occlusion_accuracy, pts_within_{1,2,4,8,16}, jaccard_{1,2,4,8,16}, average_jaccard and
    average_pts_within_thresh, all fractions in [0, 1] (NaN where a video has no scored visible point).
    """
    axes = (2,) if get_trackwise_metrics else (1, 2)
    scored = evaluation_mask(query_points, gt_tracks.shape[2], query_mode)

    metrics: dict[str, np.ndarray] = {}
    metrics["occlusion_accuracy"] = np.sum(np.equal(pred_occluded, gt_occluded) & scored, axis=axes) / np.sum(
        scored, axis=axes
    )

    visible = np.logical_not(gt_occluded)
    pred_visible = np.logical_not(pred_occluded)
    squared_distance = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
    visible_count = np.sum(visible & scored, axis=axes)
    fractions, jaccards = [], []
    for thresh in THRESHOLDS:
        within = squared_distance < np.square(thresh)
        correct = within & visible
        fraction = np.sum(correct & scored, axis=axes) / visible_count
        # Jaccard = TP / (TP + FP + FN); TP + FN is the number of scored ground-truth-visible points.
        true_positives = np.sum(correct & pred_visible & scored, axis=axes)
        false_positives = ((~visible) & pred_visible) | ((~within) & pred_visible)
        false_positives = np.sum(false_positives & scored, axis=axes)
        jaccard = true_positives / (visible_count + false_positives)
        metrics[f"pts_within_{thresh}"] = fraction
        metrics[f"jaccard_{thresh}"] = jaccard
        fractions.append(fraction)
        jaccards.append(jaccard)
    metrics["average_jaccard"] = np.mean(np.stack(jaccards, axis=1), axis=1)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(fractions, axis=1), axis=1)
    return metrics


def tapvid_video_summary(metrics: Mapping[str, np.ndarray], index: int = 0) -> dict[str, float]:
    """One video's TAP-Vid metrics in percent, under the reference's names (aj, delta_avg, oa, delta_x, jaccard_x)."""
    summary = {
        "aj": float(metrics["average_jaccard"][index]) * 100,
        "delta_avg": float(metrics["average_pts_within_thresh"][index]) * 100,
        "oa": float(metrics["occlusion_accuracy"][index]) * 100,
    }
    for thresh in THRESHOLDS:
        summary[f"delta_{thresh}"] = float(metrics[f"pts_within_{thresh}"][index]) * 100
    for thresh in THRESHOLDS:
        summary[f"jaccard_{thresh}"] = float(metrics[f"jaccard_{thresh}"][index]) * 100
    return summary


# ------------------------------------------------------------------------------- Dynamic Replica / PointOdyssey


def reduce_masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(values * mask) / (EPS + sum(mask)) over all elements, mask broadcast to values."""
    mask = mask.expand_as(values)
    return torch.sum(values * mask) / (EPS + torch.sum(mask))


def masked_median_per_row(values: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """float32 median of each row of ``values`` (R, S) over ``mask > 0``; NaN for rows with an empty mask."""
    values_np = values.detach().cpu().numpy()
    mask_np = mask.detach().cpu().numpy()
    medians = np.zeros([values_np.shape[0]], np.float32)
    for row in range(values_np.shape[0]):
        keep = mask_np[row] > 0
        medians[row] = np.median(values_np[row][keep]) if np.sum(keep) > 0 else np.nan
    return medians


def _to_256_raster(tracks: torch.Tensor, scale_x: float, scale_y: float) -> torch.Tensor:
    scale = torch.tensor([scale_x, scale_y], dtype=torch.float32, device=tracks.device).reshape(1, 1, 2)
    return tracks[..., :2] / scale


def _after_first_visible(visibility: torch.Tensor) -> torch.Tensor:
    """(B, T, N) bool: frames strictly after each track's first visible frame (frame 0 if never visible)."""
    batch, frames, num = visibility.shape
    first_visible = torch.argmax((visibility > 0).to(torch.uint8), dim=1)  # first maximum
    frame_ids = torch.arange(frames, device=visibility.device)[None, :, None].expand(batch, frames, num)
    return frame_ids > first_visible.unsqueeze(1)


def _survival(distances: torch.Tensor, visibility: torch.Tensor) -> float:
    """Mean over (B, T, N) of "no visible frame so far was more than 50 px (256 raster) off"."""
    ok = 1 - (distances > SURVIVAL_THRESHOLD).float() * visibility
    return torch.mean(torch.cumprod(ok, dim=1)).item() * 100.0


def compute_dynamic_replica_metrics(
    pred_tracks: torch.Tensor, gt_tracks: torch.Tensor, gt_visibility: torch.Tensor, height: int, width: int
) -> dict[str, float]:
    """Dynamic Replica metrics of one video, in percent, as the reference's ``evaluate_dr``.

    pred_tracks / gt_tracks (B, T, N, 2) xy pixels of a (height, width) video; gt_visibility (B, T, N).
    Positions are rescaled by ((W-1)/255, (H-1)/255); frames up to each track's first visible frame are
    excluded. Returns accuracy{,_vis,_occ}_{thr}, their averages accuracy / accuracy_vis / accuracy_occ and
    survival.
    """
    visibility = gt_visibility.float()
    scale_x, scale_y = (width - 1) / 255.0, (height - 1) / 255.0
    distances = torch.norm(
        _to_256_raster(pred_tracks.float(), scale_x, scale_y) - _to_256_raster(gt_tracks.float(), scale_x, scale_y),
        dim=-1,
    )
    tracking = _after_first_visible(visibility)
    metrics: dict[str, float] = {}
    sums = {"accuracy_occ": 0.0, "accuracy_vis": 0.0, "accuracy": 0.0}
    for thr in THRESHOLDS:
        within = (distances < thr).float()
        values = {
            "accuracy_occ": reduce_masked_mean(within, (1 - visibility) * tracking).item() * 100.0,
            "accuracy_vis": reduce_masked_mean(within, visibility * tracking).item() * 100.0,
            "accuracy": reduce_masked_mean(within, tracking).item() * 100.0,
        }
        for name, value in values.items():
            metrics[f"{name}_{thr}"] = value
            sums[name] += value
    metrics["survival"] = _survival(distances, visibility)
    for name, total in sums.items():
        metrics[name] = total / len(THRESHOLDS)
    return metrics


def compute_point_odyssey_metrics(
    pred_tracks: torch.Tensor,
    gt_tracks: torch.Tensor,
    gt_visibility: torch.Tensor,
    valids: torch.Tensor,
    height: int,
    width: int,
) -> dict[str, float]:
    """PointOdyssey metrics of one video as the reference's ``evaluate_po``.

    pred_tracks / gt_tracks (B, T, N, 2) xy pixels of a (height, width) video; gt_visibility and valids
    (B, T, N). Positions are rescaled by (W/256, H/256); frame 0 is excluded from d_*. Returns d_{thr} (over
    valid points), d_vis_{thr} (visible points after the first visible frame), d_avg, d_vis_avg, survival (all
    percent) and median_l2 / median_vis_l2 (mean over tracks of the per-track median distance, 256 raster).
    """
    visibility = gt_visibility.float()
    valids = valids.float()
    batch, frames, num = visibility.shape
    scale_x, scale_y = width / 256.0, height / 256.0
    pred = _to_256_raster(pred_tracks.float(), scale_x, scale_y)
    gt = _to_256_raster(gt_tracks.float(), scale_x, scale_y)
    tracking = _after_first_visible(visibility)
    metrics: dict[str, float] = {}
    d_sum = d_vis_sum = 0.0
    for thr in THRESHOLDS:
        within = (torch.norm(pred[:, 1:] - gt[:, 1:], dim=-1) < thr).float()
        d_all = reduce_masked_mean(within, valids[:, 1:]).item() * 100.0
        d_vis = reduce_masked_mean(within, visibility[:, 1:] * tracking[:, 1:]).item() * 100.0
        metrics[f"d_{thr}"] = d_all
        metrics[f"d_vis_{thr}"] = d_vis
        d_sum += d_all
        d_vis_sum += d_vis
    metrics["d_avg"] = d_sum / len(THRESHOLDS)
    metrics["d_vis_avg"] = d_vis_sum / len(THRESHOLDS)
    distances = torch.norm(pred - gt, dim=-1)
    metrics["survival"] = _survival(distances, visibility)
    per_track = distances.permute(0, 2, 1).reshape(batch * num, frames)
    for name, mask in (("median_l2", valids), ("median_vis_l2", visibility)):
        medians = masked_median_per_row(per_track, mask.permute(0, 2, 1).reshape(batch * num, frames))
        metrics[name] = torch.from_numpy(medians).mean().item()
    return metrics


# --------------------------------------------------------------------------------------------- accumulation


class MetricAccumulator:
    """Collects one metric dict per video and averages each metric over videos (plain sum / count)."""

    def __init__(self) -> None:
        self.videos: list[tuple[str, dict[str, float]]] = []

    def update(self, name: str, metrics: Mapping[str, float]) -> None:
        """Record the metrics of one video."""
        self.videos.append((name, dict(metrics)))

    def __len__(self) -> int:
        return len(self.videos)

    def results(self) -> dict[str, float]:
        """Mean of every metric over the recorded videos that have it (EgoPoints' out-of-view metrics exist only for
        some videos, as in the reference), in the order the keys first appear."""
        if not self.videos:
            raise ValueError("No video was evaluated")
        keys = list(dict.fromkeys(key for _, metrics in self.videos for key in metrics))
        return {key: sum(values) / len(values)
                for key in keys for values in [[m[key] for _, m in self.videos if key in m]]}

    def to_dict(self) -> dict[str, object]:
        """Every per-video and final number, JSON-serialisable."""
        return {
            "num_videos": len(self.videos),
            "videos": [{"name": name, **metrics} for name, metrics in self.videos],
            "final": self.results(),
        }
