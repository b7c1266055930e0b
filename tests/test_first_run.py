"""A new user's first run without network: the hub's absence is one quick line naming the offline fallbacks, and the
shipped random-weight config (``config/tiny.yaml``) runs the README's offline demo and the evaluation CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_model import tiny_config
from trackon2.dataset.synthetic import write_tapvid_davis
from trackon2.evaluation.eval import main as eval_main
from trackon2.model.yaml_schema import load_config

REPO = Path(__file__).resolve().parents[1]
FALLBACK = "--checkpoint none --config config/tiny.yaml"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No hub: an endpoint nobody listens on and an empty cache."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HTTP", "http"))}
    return {**env, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(tmp_path / "hf"),
            "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _run(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    return result, time.monotonic() - start


def _one_quick_line(result: subprocess.CompletedProcess, seconds: float) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "Retrying" not in result.stderr and seconds < 20, f"{seconds:.1f} s"  # the hub's retries take ~25 s
    assert "cannot be reached" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0] and FALLBACK in lines[0]
    return lines[0]


@pytest.mark.slow
def test_demo_without_network_fails_at_once_naming_the_offline_fallbacks(tmp_path):
    result, seconds = _run(["demo.py", "--video", "media/sample.mp4", "--output_dir", str(tmp_path / "out")],
                           _offline_env(tmp_path))
    assert "trackon2_dinov3_checkpoint.pt" in _one_quick_line(result, seconds)


@pytest.mark.slow
def test_a_hub_vit_without_network_fails_at_once(tmp_path):
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"never read: the ViT is built first")
    result, seconds = _run(["demo.py", "--video", "media/sample.mp4", "--config", "config/test_dinov2.yaml",
                            "--checkpoint", str(weights), "--output_dir", str(tmp_path / "out")],
                           _offline_env(tmp_path))
    assert "facebook/dinov2-small" in _one_quick_line(result, seconds)


@pytest.mark.slow
def test_from_pretrained_without_network_fails_at_once(tmp_path):
    code = ("from model.trackon_predictor import Predictor\nfrom model.checkpoint import CheckpointError\n"
            "try:\n    Predictor.from_pretrained('track-on-r')\nexcept CheckpointError as err:\n"
            "    print(err, file=__import__('sys').stderr); raise SystemExit(1)\n")
    result, seconds = _run(["-c", code], _offline_env(tmp_path))
    assert "track_on_r.pt" in _one_quick_line(result, seconds)


def test_the_shipped_tiny_config_is_the_tests_tiny_model():
    assert vars(load_config(REPO / "config" / "tiny.yaml")) == vars(tiny_config())


@pytest.mark.slow
def test_readme_offline_demo_tracks_the_sample_with_a_sized_progress_bar(tmp_path):
    result, _ = _run(["demo.py", "--video", "media/sample.mp4", "--checkpoint", "none", "--config",
                      "config/tiny.yaml", "--output_dir", str(tmp_path / "out"), "--max_frames", "6", "--no_video"],
                     _offline_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "tracking: 100%" in result.stderr and "6/6" in result.stderr  # a total, hence an ETA
    assert np.load(tmp_path / "out" / "tracks.npz")["tracks"].shape == (6, 256, 2)


@pytest.mark.slow
def test_demo_bar_has_the_whole_video_as_total(tmp_path):
    result, _ = _run(["demo.py", "--video", "media/sample.mp4", "--checkpoint", "none", "--config",
                      "config/tiny.yaml", "--output_dir", str(tmp_path / "out"), "--no_video", "--grid_size", "2"],
                     _offline_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert " 0/48 " in result.stderr and "48/48" in result.stderr


def test_evaluation_takes_checkpoint_none(tmp_path, capsys):
    write_tapvid_davis(tmp_path / "davis.pkl", 2, seed=1, num_frames=4, height=48, width=48, num_points=8)
    argv = ["--checkpoint", "none", "--model_config_path", str(REPO / "config" / "tiny.yaml"), "--dataset_name",
            "davis", "--dataset_path", str(tmp_path / "davis.pkl"), "--output_json", str(tmp_path / "out.json"),
            "--device", "cpu", "--no_progress"]
    assert eval_main(argv) == 0
    payload = json.loads((tmp_path / "out.json").read_text())
    assert payload["num_videos"] == 2 and payload["model_checkpoint_path"] == "none"
    assert eval_main(argv) == 0  # seeded random weights: a rerun gives the same numbers
    assert json.loads((tmp_path / "out.json").read_text())["final"] == payload["final"]
    capsys.readouterr()
    assert eval_main(argv[:2] + ["--model_config_path", str(REPO / "config" / "test.yaml")] + argv[4:]) == 2
    assert "needs a config with backbone_config" in capsys.readouterr().err
