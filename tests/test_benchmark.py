"""``evaluation.speed.benchmark`` with the tiny random-weight model on random clips (CPU)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.tiny_model import tiny_config
from trackon2.dataset.synthetic import write_tapvid_davis
from trackon2.evaluation.speed import peak_memory as memory
from trackon2.evaluation.speed.benchmark import benchmark, grid_queries, main, random_clips
from trackon2.evaluation.speed.stage_timing import StageTimer
from trackon2.evaluation.speed.steady_state import fill_memory_at_start
from trackon2.model.stages import STAGES
from trackon2.model.trackon_predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]


def test_grid_queries_start_at_frame_zero_inside_the_frame() -> None:
    queries = grid_queries(4, 48, 64, torch.device("cpu"))
    assert queries.shape == (1, 16, 3)
    assert (queries[..., 0] == 0).all()
    assert (queries[..., 1] > 0).all() and (queries[..., 1] < 64).all()
    assert (queries[..., 2] > 0).all() and (queries[..., 2] < 48).all()


def test_random_clips_are_seeded() -> None:
    first = list(random_clips(2, 3, 8, 10, seed=1))
    again = list(random_clips(2, 3, 8, 10, seed=1))
    assert first[0].shape == (1, 3, 3, 8, 10) and torch.equal(first[1], again[1])
    assert 0 <= first[0].min() and first[0].max() <= 255


def test_peak_rss_is_at_least_current_rss() -> None:
    memory.reset_peak_rss()
    current = memory.current_rss_bytes()
    assert current is None or memory.peak_rss_bytes() >= current > 0


@pytest.mark.slow
def test_benchmark_counts_only_timed_clips() -> None:
    predictor = Predictor(tiny_config(), support_grid_size=0)
    clips = random_clips(3, 4, 64, 64, seed=0)
    result = benchmark(predictor, clips, grid_size=3, memory_size=6, device=torch.device("cpu"), warmup=1)
    assert result.num_queries == 9 and result.timed_clips == 2 and result.timed_frames == 8
    assert result.model_fps > 0 and result.end_to_end_fps > 0
    assert result.end_to_end_fps <= result.model_fps * 1.05  # end to end includes the model call
    assert result.peak_memory_bytes > 0 and result.peak_memory_kind.startswith("process_peak_rss")



def _tiny_config_file(folder: Path) -> Path:
    """The tests' tiny random-weight model configuration written as YAML."""
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(vars(tiny_config())))
    return config


@pytest.mark.slow
def test_command_line_writes_json(tmp_path, capsys) -> None:
    config = _tiny_config_file(tmp_path)
    output = tmp_path / "bench.json"
    argv = ["--config_path", str(config), "--N_sqrt", "2", "--memory_size", "8", "--num_clips", "2",
            "--warmup", "1", "--num_frames", "3", "--height", "48", "--width", "64", "--device", "cpu",
            "--output_json", str(output)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Memory size: 8, N: 4" in printed and "[Speed] Model-only FPS:" in printed
    result = json.loads(output.read_text())["results"][0]
    assert result["memory_size"] == 8 and result["timed_frames"] == 3 and math.isfinite(result["model_fps"])


def test_command_line_rejects_bad_arguments(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--config_path", "/nonexistent.yaml"])
    assert "--config_path: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--num_clips", "2", "--warmup", "2"])
    assert "--warmup" in capsys.readouterr().err


def test_command_line_on_davis_file(tmp_path, capsys) -> None:
    config = _tiny_config_file(tmp_path)
    davis = write_tapvid_davis(tmp_path / "davis.pkl", 2, seed=0, num_frames=3, height=32, width=32, num_points=4)
    argv = ["--config_path", str(config), "--davis_path", str(davis), "--N_sqrt", "2", "--num_clips", "2",
            "--warmup", "1", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert "1 timed clips / 3 frames" in capsys.readouterr().out
    davis.write_bytes(b"garbage")
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_command_line_rejects_unusable_device(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--device", "tpu:banana"])
    assert "--device" in capsys.readouterr().err


def test_batches_stages_and_full_memory_from_the_command_line(tmp_path, capsys) -> None:
    config = _tiny_config_file(tmp_path)
    output = tmp_path / "bench.json"
    argv = ["--config_path", str(config), "--N_sqrt", "2", "--memory_size", "6", "--num_clips", "2",
            "--warmup", "1", "--num_frames", "2", "--height", "48", "--width", "64", "--device", "cpu",
            "--batch", "1", "3", "--support_grid", "2", "--stages", "--full_memory", "--output_json", str(output)]
    assert main(argv) == 0
    assert "[Stages] ms per step: vit_adapter_fpn" in capsys.readouterr().out
    results = json.loads(output.read_text())["results"]
    assert [r["batch"] for r in results] == [1, 3] and [r["timed_frames"] for r in results] == [2, 6]
    for result in results:
        assert set(result["stage_ms_per_step"]) == set(STAGES)
        assert all(ms > 0 for ms in result["stage_ms_per_step"].values())


def test_stage_timing_leaves_outputs_unchanged() -> None:
    torch.manual_seed(0)
    predictor = Predictor(tiny_config(), support_grid_size=2)
    video = next(random_clips(1, 3, 48, 64, seed=0, batch=2))
    queries = grid_queries(2, 48, 64, torch.device("cpu")).expand(2, -1, -1)
    plain = predictor(video, queries)
    methods = dict(vars(predictor.model))
    with StageTimer(torch.device("cpu")) as timer:
        timed = predictor(video, queries)
    assert torch.equal(plain[0], timed[0]) and torch.equal(plain[1], timed[1])
    assert all(timer.totals_ms[stage] > 0 for stage in STAGES)
    assert vars(predictor.model).keys() == methods.keys()  # nothing was attached to the model


def test_an_unknown_stage_name_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown stage\\(s\\) \\['memory'\\]"):
        StageTimer(torch.device("cpu"), stages=["memory", "reranking"])


def test_full_memory_changes_only_the_given_predictor() -> None:
    torch.manual_seed(0)
    filled, plain = Predictor(tiny_config(), support_grid_size=0), Predictor(tiny_config(), support_grid_size=0)
    fill_memory_at_start(filled)
    video = next(random_clips(1, 2, 48, 64, seed=0))
    queries = grid_queries(2, 48, 64, torch.device("cpu"))
    for predictor, full in ((filled, True), (plain, False)):
        tracker = predictor._tracker_for(1, queries[..., 1:])
        tracker.add_queries(queries[..., 1:] / torch.tensor([64.0, 48.0]), 0)
        tracker.step(video[:, 0])
        assert bool((~tracker.state.memory.empty).all()) == full
        assert tracker.plan(1, torch.device("cpu")).empty_slots == (0 if full else predictor.memory_size - 1)


@pytest.mark.slow
def test_compare_speed_runs_two_checkouts_on_the_same_weights(tmp_path) -> None:
    """Both sides are this checkout: same weights and clip, so the outputs agree exactly; profiles are written."""
    config = _tiny_config_file(tmp_path)
    summary_file = tmp_path / "compare.json"
    command = [sys.executable, str(ROOT / "scripts" / "compare_speed.py"), "--baseline", str(ROOT),
               "--candidate", str(ROOT), "--config", str(config), "--rounds", "1", "--frames", "2", "--warmup", "1",
               "--queries", "3", "--support_grid", "2", "--memory_size", "6", "--full_memory", "--stages",
               "--profile", "--work_dir", str(tmp_path / "work"), "--output_json", str(summary_file)]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    result = json.loads(summary_file.read_text())
    assert result["summary"]["max_trajectory_diff_px"] == 0.0 and result["summary"]["visibility_flips"] == 0
    assert result["summary"]["visibility_entries"] == 2 * 3  # the support grid is not returned
    summary = result["summary"]
    assert summary["top_k_tie_flips"] == [] and summary["top_k_changes_beyond_ties"] == 0
    assert summary["max_trajectory_diff_px_without_tie_flips"] == 0
    assert set(result["rounds"][0]["candidate"]["stages_ms"]) == set(STAGES)
    assert "aten::" in (tmp_path / "work" / "candidate_0.json.profile.txt").read_text()


def test_top_k_set_changes_are_found_with_their_score_gap() -> None:
    spec = importlib.util.spec_from_file_location("compare_speed", ROOT / "scripts" / "compare_speed.py")
    compare_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_speed)
    values = torch.tensor([0.9, 0.5, 0.49999997]).expand(2, 4, 3).clone()  # (T, N, K + 1) with K = 2
    values[0, 1] = torch.tensor([0.9, 0.5, 0.2])
    indices = torch.tensor([7, 3, 5]).expand(2, 4, 3).clone()
    swapped = indices.clone()
    swapped[1, 2] = torch.tensor([7, 5, 3])  # frame 1, query 2 takes the (K+1)-th patch instead of the K-th
    swapped[0, 3] = torch.tensor([3, 7, 5])  # same set in another order: not a change
    swapped[0, 1] = torch.tensor([7, 5, 3])  # a change where the scores are far apart: not a tie
    changes = compare_speed.top_k_set_changes({"top_k_values": values, "top_k_indices": indices},
                                              {"top_k_values": values, "top_k_indices": swapped}, tie_tolerance=1e-5)
    assert [(c["frame"], c["query"], c["tie"]) for c in changes] == [(0, 1, False), (1, 2, True)]
    assert changes[1]["gap_to_next"] == pytest.approx(3e-8, abs=1e-8)
    assert changes[0]["gap_to_next"] == pytest.approx(0.3)
