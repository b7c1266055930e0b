"""``python -m evaluation.eval`` on generated TAP-Vid DAVIS files with the tiny random-weight model: the printed and
JSON metrics equal a direct computation, and ``torchrun --nproc_per_node=2`` gives the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.tiny_model import tiny_config
from trackon2.dataset.synthetic import write_tapvid_davis
from trackon2.dataset.tapvid import TAPVid
from trackon2.evaluation.eval import main
from trackon2.evaluation.metrics import compute_tapvid_metrics, tapvid_video_summary
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.yaml_schema import load_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NUM_VIDEOS = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    config = vars(tiny_config())
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = Predictor(tiny_config(M_i=config["M"]), support_grid_size=0).model
    torch.save(model.state_dict(), root / "tiny.pth")
    write_tapvid_davis(root / "davis.pkl", NUM_VIDEOS, seed=5, num_frames=6, height=64, width=64, num_points=64)
    return {"root": root, "config": root / "tiny.yaml", "checkpoint": root / "tiny.pth", "data": root / "davis.pkl"}


def _command(setup: dict[str, Path], output: Path) -> list[str]:
    return [
        "-m", "evaluation.eval",
        "--model_config_path", str(setup["config"]),
        "--dataset_name", "davis",
        "--dataset_path", str(setup["data"]),
        "--model_checkpoint_path", str(setup["checkpoint"]),
        "--output_json", str(output),
        "--device", "cpu",
        "--no_progress",
    ]  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def single_process(setup) -> tuple[dict, str]:
    output = setup["root"] / "single.json"
    result = _run([sys.executable, *_command(setup, output)])
    return json.loads(output.read_text()), result.stdout


def _direct_metrics(setup: dict[str, Path]) -> list[dict[str, float]]:
    args = load_config(setup["config"])
    args.M_i = 24  # the DAVIS override
    predictor = Predictor(args, checkpoint_path=setup["checkpoint"], support_grid_size=20)
    dataset = TAPVid(None, data_root=setup["data"], dataset_type="davis")
    summaries = []
    for video, tracks, visible, query_points in (dataset[i] for i in range(len(dataset))):
        queries = torch.stack([query_points[:, 0], query_points[:, 2], query_points[:, 1]], dim=1)[None]
        pred_tracks, pred_visible = predictor(video[None], queries)
        metrics = compute_tapvid_metrics(
            query_points[None].numpy(),
            (~visible).T[None].numpy(),
            tracks.permute(1, 0, 2)[None].numpy(),
            (~pred_visible[0]).T[None].numpy(),
            pred_tracks[0].permute(1, 0, 2)[None].numpy(),
            "first",
        )
        summaries.append(tapvid_video_summary(metrics))
    return summaries


@pytest.mark.slow
def test_json_and_printout_match_direct_computation(setup, single_process) -> None:
    payload, stdout = single_process
    assert payload["num_videos"] == NUM_VIDEOS and payload["M_i"] == 24 and payload["support_grid_size"] == 20
    assert payload["query_mode"] == "first"
    # the random model is poor but not hopeless here, so the comparison covers non-trivial numbers
    assert payload["final"]["aj"] > 0 and 0 < payload["final"]["oa"] < 100
    direct = _direct_metrics(setup)
    for video, expected in zip(payload["videos"], direct):
        for key, value in expected.items():
            assert video[key] == pytest.approx(value, abs=1e-9), key
    for key in ("aj", "delta_avg", "oa"):
        assert payload["final"][key] == pytest.approx(np.mean([d[key] for d in direct]), abs=1e-9)
    assert f"AJ: {payload['final']['aj']:.2f}" in stdout
    assert f"OA: {payload['final']['oa']:.2f}" in stdout
    assert stdout.count("Video ") == NUM_VIDEOS


@pytest.mark.slow
def test_torchrun_two_processes_matches_single_process(setup, single_process) -> None:
    output = setup["root"] / "distributed.json"
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2"]
    result = _run([*torchrun, *_command(setup, output)])
    payload = json.loads(output.read_text())
    expected, _ = single_process
    assert payload["world_size"] == 2
    assert [v["name"] for v in payload["videos"]] == [v["name"] for v in expected["videos"]]
    for got, want in zip(payload["videos"], expected["videos"]):
        assert got == pytest.approx(want, abs=1e-9)
    assert payload["final"] == pytest.approx(expected["final"], abs=1e-9)
    assert result.stdout.count("AJ: ") >= 1


@pytest.mark.slow
def test_max_videos_in_process(setup, single_process) -> None:
    output = setup["root"] / "first.json"
    assert main(_command(setup, output)[2:] + ["--max_videos", "1"]) == 0
    payload = json.loads(output.read_text())
    expected, _ = single_process
    assert payload["num_videos"] == 1
    assert payload["videos"][0] == pytest.approx(expected["videos"][0], abs=1e-9)
