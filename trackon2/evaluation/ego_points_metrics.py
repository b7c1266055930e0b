"""EgoPoints metrics, as the Track-On-R reference's ``compute_ego_points_metrics`` computes them (float32 torch).

Positions are compared on a 256x256 raster (divided by (W/256, H/256)); frame 0 (the query frame) is left out of
every metric but the median trajectory error. Keys, all percentages except ``median_l2``:

    old_d_all_{1.0,2.0,4.0,8.0,16.0}, old_d_all_avg   delta_avg: within 1..16 px over valid points
    new_d_all_{8.0,16.0,24.0}, new_d_all_avg          delta*: the same at 8, 16, 24 px
    median_l2                                          MTE: mean over tracks of each track's median error (valid frames)
    vis_acc                                            OA: visibility accuracy over vis_valids
    out_of_view                                        OOVA: out-of-view points predicted outside the frame
    in_view                                            IVA: valid or occluded points predicted inside the frame
    RE_ID_acc                                          re-identification: among out-of-view points predicted outside,
                                                       valid ones within 8/16/24 px (video pixels), averaged

``out_of_view`` and ``RE_ID_acc`` exist only for videos with an out-of-view point, ``in_view`` only for videos with
a valid or occluded point, as in the reference (the per-video averages then run over the videos that have them).
"""

from __future__ import annotations

import torch

from trackon2.evaluation.metrics import masked_median_per_row, reduce_masked_mean

DELTA_THRESHOLDS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
DELTA_STAR_THRESHOLDS: tuple[float, ...] = (8.0, 16.0, 24.0)


def visibility_decisions(pred_visibility: torch.Tensor) -> torch.Tensor:
    """0/1 float visibility from booleans, from probabilities in [0, 1] (rounded) or else from logits."""
    if pred_visibility.dtype == torch.bool:
        return pred_visibility.float()
    if pred_visibility.min() >= 0.0 and pred_visibility.max() <= 1.0:
        return pred_visibility.round().float()
    return torch.sigmoid(pred_visibility).round().float()


def _inside_frame(tracks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, T, N) bool: x in [0, W] and y in [0, H]."""
    x, y = tracks[..., 0], tracks[..., 1]
    return (x >= 0.0) & (x <= width) & (y >= 0.0) & (y <= height)


def compute_ego_points_metrics(
    pred_tracks: torch.Tensor,
    pred_visibility: torch.Tensor,
    gt_tracks: torch.Tensor,
    gt_visibility: torch.Tensor,
    valids: torch.Tensor,
    vis_valids: torch.Tensor,
    out_of_view: torch.Tensor,
    occluded: torch.Tensor,
    height: int,
    width: int,
) -> dict[str, float]:
    """EgoPoints metrics of one video (see the module docstring).

    pred_tracks / gt_tracks (B, T, N, 2) xy pixels of a (height, width) video; pred_visibility (B, T, N) bool,
    probabilities or logits; gt_visibility, valids, vis_valids, out_of_view, occluded (B, T, N) 0/1 floats.
    """
    pred = pred_tracks.float()
    gt = gt_tracks.float()
    batch, frames, num, _ = gt.shape
    scale = torch.tensor([width / 256.0, height / 256.0], dtype=torch.float32, device=gt.device).reshape(1, 1, 2)
    metrics: dict[str, float] = {}
    for prefix, thresholds in (("old", DELTA_THRESHOLDS), ("new", DELTA_STAR_THRESHOLDS)):
        total = 0.0
        for thr in thresholds:
            within = (torch.norm(pred[:, 1:] / scale - gt[:, 1:] / scale, dim=-1) < thr).float()
            value = reduce_masked_mean(within, valids[:, 1:]).item() * 100.0
            metrics[f"{prefix}_d_all_{thr}"] = value
            total += value
        metrics[f"{prefix}_d_all_avg"] = total / len(thresholds)

    distances = torch.norm(pred / scale - gt / scale, dim=-1)
    medians = masked_median_per_row(distances.permute(0, 2, 1).reshape(batch * num, frames),
                                    valids.permute(0, 2, 1).reshape(batch * num, frames))
    metrics["median_l2"] = torch.from_numpy(medians).mean().item()

    correct = (visibility_decisions(pred_visibility) == gt_visibility).float()
    metrics["vis_acc"] = reduce_masked_mean(correct, vis_valids.float()).mean().item() * 100.0

    inside = _inside_frame(pred[:, 1:], height, width)
    predicted_outside = torch.logical_not(inside).float()
    total_out_of_view = torch.sum(out_of_view[:, 1:])
    if total_out_of_view > 0:
        hits = torch.sum(out_of_view[:, 1:] * predicted_outside)
        metrics["out_of_view"] = (hits / total_out_of_view).item() * 100.0
    in_view = valids[:, 1:] + occluded[:, 1:]
    total_in_view = torch.sum(in_view)
    if total_in_view > 0:
        metrics["in_view"] = (torch.sum(in_view * inside.float()) / total_in_view).item() * 100.0
    if total_out_of_view > 0:
        found_outside = out_of_view[:, 1:] * predicted_outside
        total = 0.0
        for thr in DELTA_STAR_THRESHOLDS:
            within = valids[:, 1:] * (torch.norm(pred[:, 1:] - gt[:, 1:], dim=-1) < thr).float()
            total += reduce_masked_mean(within, found_outside).item() * 100.0
        metrics["RE_ID_acc"] = total / len(DELTA_STAR_THRESHOLDS)
    return metrics
