"""Dynamic Replica / PointOdyssey metrics and the per-video accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trackon2.evaluation.metrics import (
    THRESHOLDS,
    MetricAccumulator,
    compute_dynamic_replica_metrics,
    compute_point_odyssey_metrics,
)

H, W = 64, 96


def _random_tracks(seed: int = 0, frames: int = 8, num: int = 5):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(1, frames, num, 2, generator=gen) * torch.tensor([W, H])
    pred = gt + torch.randn(1, frames, num, 2, generator=gen) * 3.0
    vis = torch.rand(1, frames, num, generator=gen) > 0.3
    return pred, gt, vis


def test_dynamic_replica_perfect_prediction() -> None:
    _, gt, vis = _random_tracks()
    vis[0, :, 0] = True  # at least one occluded and one visible tracked frame overall
    vis[0, 3, 1] = False
    metrics = compute_dynamic_replica_metrics(gt.clone(), gt, vis, H, W)
    assert metrics["accuracy"] == pytest.approx(100.0, abs=1e-3)
    assert metrics["accuracy_vis"] == pytest.approx(100.0, abs=1e-3)
    assert metrics["survival"] == 100.0


def test_dynamic_replica_matches_loop_rederivation() -> None:
    pred, gt, vis = _random_tracks(seed=3, frames=10, num=6)
    metrics = compute_dynamic_replica_metrics(pred, gt, vis, H, W)
    scale = np.array([(W - 1) / 255.0, (H - 1) / 255.0])
    dist = np.linalg.norm((pred[0].numpy() - gt[0].numpy()) / scale, axis=-1)  # (T, N)
    visible = vis[0].numpy()
    for thr in THRESHOLDS:
        hits = {"vis": [], "occ": [], "all": []}
        for n in range(dist.shape[1]):
            first = int(np.argmax(visible[:, n]))
            for t in range(first + 1, dist.shape[0]):
                hits["all"].append(dist[t, n] < thr)
                hits["vis" if visible[t, n] else "occ"].append(dist[t, n] < thr)
        assert metrics[f"accuracy_{thr}"] == pytest.approx(100 * np.mean(hits["all"]), abs=1e-3)
        assert metrics[f"accuracy_vis_{thr}"] == pytest.approx(100 * np.mean(hits["vis"]), abs=1e-3)
        assert metrics[f"accuracy_occ_{thr}"] == pytest.approx(100 * np.mean(hits["occ"]), abs=1e-3)
    alive = []
    for n in range(dist.shape[1]):
        failed = False
        for t in range(dist.shape[0]):
            failed = failed or (visible[t, n] and dist[t, n] > 50)
            alive.append(not failed)
    assert metrics["survival"] == pytest.approx(100 * np.mean(alive), abs=1e-3)


def test_point_odyssey_known_values() -> None:
    frames, num = 4, 2
    gt = torch.zeros(1, frames, num, 2)
    pred = gt.clone()
    pred[0, :, 1, 0] = 3.0 * W / 256.0  # track 1 is 3 px (256 raster) off in every frame
    vis = torch.ones(1, frames, num, dtype=torch.bool)
    valids = torch.ones(1, frames, num)
    metrics = compute_point_odyssey_metrics(pred, gt, vis, valids, H, W)
    for thr, expected in {1: 50.0, 2: 50.0, 4: 100.0, 8: 100.0, 16: 100.0}.items():
        assert metrics[f"d_{thr}"] == pytest.approx(expected, abs=1e-3)
        assert metrics[f"d_vis_{thr}"] == pytest.approx(expected, abs=1e-3)
    assert metrics["d_avg"] == pytest.approx(80.0, abs=1e-3)
    assert metrics["survival"] == 100.0
    assert metrics["median_l2"] == pytest.approx(1.5, abs=1e-5)  # medians 0 and 3, averaged


def test_accumulator_means_and_json() -> None:
    acc = MetricAccumulator()
    acc.update("a", {"aj": 10.0, "oa": 50.0})
    acc.update("b", {"aj": 20.0, "oa": 70.0})
    assert len(acc) == 2
    assert acc.results() == {"aj": 15.0, "oa": 60.0}
    dumped = acc.to_dict()
    assert dumped["num_videos"] == 2
    assert dumped["videos"][1] == {"name": "b", "aj": 20.0, "oa": 70.0}
    with pytest.raises(ValueError):
        MetricAccumulator().results()


def test_accumulator_propagates_nan() -> None:
    acc = MetricAccumulator()
    acc.update("a", {"median_vis_l2": float("nan")})
    assert math.isnan(acc.results()["median_vis_l2"])
