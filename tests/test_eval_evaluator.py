"""The per-video evaluation loop with a stand-in predictor (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trackon2.dataset.eval_sample import EvalSample, first_visible_queries
from trackon2.dataset.point_odyssey import PointOdysseyDataset, load_resized_video
from trackon2.dataset.synthetic import write_point_odyssey
from trackon2.evaluation.evaluator import VideoResult, evaluate
from trackon2.evaluation.metrics import (
    compute_dynamic_replica_metrics,
    compute_point_odyssey_metrics,
    compute_tapvid_metrics,
    tapvid_video_summary,
)
from trackon2.evaluation.report import accumulate, final_lines, write_json

T, N, H, W = 6, 5, 32, 40


class StaticPredictor:
    """Predicts every query staying at its query position, visible where x < W / 2."""

    def __call__(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = video.shape[1]
        trajectory = queries[:, None, :, 1:].expand(-1, frames, -1, -1).clone()
        return trajectory, trajectory[..., 0] < W / 2


def _tapvid_item(seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    tracks = torch.rand(T, N, 2, generator=gen) * torch.tensor([W, H])
    visible = torch.rand(T, N, generator=gen) > 0.3
    visible[1, :] = True
    first = torch.argmax(visible.to(torch.uint8), dim=0)
    points = tracks[first, torch.arange(N)]
    queries = torch.stack([first.float(), points[:, 1], points[:, 0]], dim=1)  # (t, y, x)
    video = torch.rand(T, 3, H, W, generator=gen) * 255
    return video, tracks, visible, queries


class Samples:
    """An evaluation dataset over ready-made samples."""

    def __init__(self, samples: list[EvalSample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[index].name

    def sample(self, index: int) -> EvalSample:
        return self.samples[index]


def _sample(video, tracks, visible, queries_txy, name: str) -> EvalSample:
    return EvalSample(video, queries_txy, tracks, visible, torch.ones_like(visible), name)


def test_tapvid_evaluation_equals_direct_metrics() -> None:
    items = [_tapvid_item(seed) for seed in range(3)]
    dataset = Samples([_sample(v, t, vis, q[:, [0, 2, 1]], f"v{i}") for i, (v, t, vis, q) in enumerate(items)])
    results = evaluate(StaticPredictor(), dataset, "davis", [0, 2], torch.device("cpu"), show_progress=False)
    assert [(r.index, r.name) for r in results] == [(0, "v0"), (2, "v2")]
    for result in results:
        _, tracks, visible, queries = items[result.index]
        pred = queries[None, None, :, [2, 1]].expand(1, T, N, 2)
        pred_visible = pred[..., 0] < W / 2
        direct = compute_tapvid_metrics(
            queries[None].numpy(),
            (~visible).T[None].numpy(),
            tracks.permute(1, 0, 2)[None].numpy(),
            (~pred_visible).permute(0, 2, 1).numpy(),
            pred.permute(0, 2, 1, 3).numpy(),
            "first",
        )
        assert result.metrics == tapvid_video_summary(direct)


def test_dynamic_replica_evaluation() -> None:
    video, tracks, visible, _ = _tapvid_item(7)
    queries = torch.cat([torch.zeros(N, 1), tracks[0]], dim=1)
    dataset = Samples([_sample(video, tracks, visible, queries, "dr")])
    dr = evaluate(StaticPredictor(), dataset, "dynamic_replica", [0], torch.device("cpu"))[0]
    pred = tracks[None, :1].expand(1, T, N, 2)
    assert dr.metrics == compute_dynamic_replica_metrics(pred, tracks[None], visible[None], H, W)


def test_point_odyssey_evaluation_on_written_files(tmp_path) -> None:
    write_point_odyssey(tmp_path, 1, seed=3, num_frames=10, height=48, width=64, num_points=12)
    dataset = PointOdysseyDataset(tmp_path, "test", 256)
    po = evaluate(StaticPredictor(), dataset, "point_odyssey", [0], torch.device("cpu"), show_progress=False)[0]
    item = dataset[0]
    scale = torch.tensor([512 / 64, 384 / 48])
    tracks, visible, valids = item["trajs"].float()[None] * scale, item["visibs"][None], item["valids"][None]
    queries = first_visible_queries(tracks[0], visible[0] > 0)[None]
    pred = queries[:, None, :, 1:].expand(1, 10, -1, 2)
    assert po.metrics == compute_point_odyssey_metrics(pred, tracks, visible, valids, 384, 512)
    video, original_size = load_resized_video(item["rgb_paths"], (384, 512))
    assert video.shape == (1, 10, 3, 384, 512) and original_size == (48, 64)


def test_unknown_dataset_is_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown dataset"):
        evaluate(StaticPredictor(), Samples([]), "sintel", [], torch.device("cpu"))


def test_report_is_order_independent_and_json_strict(tmp_path) -> None:
    results = [VideoResult(1, "b", {"aj": 20.0, "oa": float("nan")}), VideoResult(0, "a", {"aj": 10.0, "oa": 1.0})]
    accumulator = accumulate(results)
    assert [name for name, _ in accumulator.videos] == ["a", "b"]
    assert accumulator.results()["aj"] == 15.0
    path = tmp_path / "out.json"
    write_json(path, "dynamic_replica", accumulator, {"world_size": 1})
    payload = json.loads(path.read_text())
    assert payload["final"]["oa"] is None and payload["videos"][0]["name"] == "a"
    assert final_lines("dynamic_replica", {"aj": 15.0}) == ["aj: 15.00"]
    assert np.isfinite(payload["final"]["aj"])
