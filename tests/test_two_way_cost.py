"""The two-way cost measurement: alternating forward-only / two-way runs on a clip queried on its middle frame."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from tests.tiny_model import tiny_config
from trackon2.evaluation import benchmark as benchmark_module
from trackon2.evaluation.speed.two_way_cost import main, measure_two_way_cost, middle_frame_queries
from trackon2.model.trackon_predictor import Predictor


def test_runs_alternate_and_leave_the_predictor_as_it_was(monkeypatch):
    predictor = Predictor(tiny_config(), support_grid_size=0)
    calls = []
    original = Predictor._track_forward

    def counting(self, video, queries, progress, **reuse):
        calls.append((self.backward_tracking, video.shape[1]))
        return original(self, video, queries, progress, **reuse)

    monkeypatch.setattr(Predictor, "_track_forward", counting)
    queries = middle_frame_queries(2, 6, 64, 64)
    cost = measure_two_way_cost(predictor, torch.rand(1, 6, 3, 64, 64) * 255, queries, repeats=2, progress=False)
    assert queries[0, :, 0].tolist() == [3.0] * 4
    # forward-only: one 6-frame pass; two-way: the 6-frame pass and one backward pass over frames 3..0
    assert calls == [(False, 6), (True, 6), (True, 4)] * 2
    assert len(cost.forward_seconds) == len(cost.two_way_seconds) == 2 and cost.ratio > 0
    assert predictor.backward_tracking is False


def test_cli_and_benchmark_flag_write_the_ratio(tmp_path: Path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(vars(tiny_config())))
    out = tmp_path / "cost.json"
    assert main(["--config_path", str(config), "--N_sqrt", "2", "--support_grid", "0", "--num_frames", "4",
                 "--height", "64", "--width", "64", "--repeats", "1", "--output_json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["query_frame"] == 2 and saved["ratio"] > 0 and len(saved["two_way_seconds"]) == 1
    bench = tmp_path / "bench.json"
    assert benchmark_module.main(["--config_path", str(config), "--N_sqrt", "2", "--num_clips", "2", "--warmup", "1",
                                  "--num_frames", "4", "--height", "64", "--width", "64", "--memory_size", "6",
                                  "--device", "cpu", "--two_way", "--output_json", str(bench)]) == 0
    assert json.loads(bench.read_text())["two_way"]["num_frames"] == 4
