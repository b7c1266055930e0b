"""demo.py end to end on a generated video with a tiny random-weight model (no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from tests.tiny_model import tiny_config
from trackon2 import demo
from trackon2.model.trackon_predictor import Predictor
from trackon2.video.files import write_video


def _setup(tmp_path, frames: int = 5):
    config = vars(tiny_config())
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    torch.save({"model": Predictor(tiny_config(M_i=4)).model.state_dict()}, tmp_path / "tiny.pt")
    rng = np.random.default_rng(0)
    write_video(tmp_path / "clip.mp4", [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(frames)], 8)
    return ["--config", str(tmp_path / "tiny.yaml"), "--checkpoint", str(tmp_path / "tiny.pt"),
            "--video", str(tmp_path / "clip.mp4"), "--output_dir", str(tmp_path / "out"), "--support_grid_size", "2"]


def test_demo_tracks_a_grid_and_writes_results(tmp_path):
    assert demo.main(_setup(tmp_path) + ["--grid_size", "3"]) == 0
    saved = np.load(tmp_path / "out" / "tracks.npz")
    assert saved["tracks"].shape == (5, 9, 2) and saved["visibility"].shape == (5, 9)
    assert json.loads((tmp_path / "out" / "tracks.json").read_text())["tracks"][0][0] == saved["tracks"][0, 0].tolist()
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0


def test_demo_queries_from_json_start_on_their_frame(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps([[2, 10, 10], [0, 50, 40]]))
    assert demo.main(_setup(tmp_path) + ["--queries_json", str(tmp_path / "q.json"), "--no_video"]) == 0
    saved = np.load(tmp_path / "out" / "tracks.npz")
    assert np.all(saved["tracks"][:2, 0] == 0) and np.any(saved["tracks"][2:, 0] != 0)
    assert np.any(saved["tracks"][:, 1] != 0)
    assert not (tmp_path / "out" / "overlay.mp4").exists()


@pytest.mark.slow
def test_demo_reports_bad_input_clearly(tmp_path, capsys):
    args = _setup(tmp_path)
    assert demo.main(args + ["--video", str(tmp_path / "missing.mp4")]) == 1
    assert "video not found" in capsys.readouterr().err
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    assert demo.main(args + ["--video", str(tmp_path / "broken.mp4")]) == 1
    assert "broken.mp4" in capsys.readouterr().err
    (tmp_path / "q.json").write_text(json.dumps([[0, 500, 10]]))
    assert demo.main(args + ["--queries_json", str(tmp_path / "q.json")]) == 1
    assert "outside" in capsys.readouterr().err
    assert demo.main(args + ["--checkpoint", str(tmp_path / "nope.pt")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_demo_keeps_the_frames_tracked_before_a_decoding_error(tmp_path, monkeypatch, capsys):
    args = _setup(tmp_path)
    real_iter = demo.iter_video_frames

    def failing_after_three(path):
        for index, frame in enumerate(real_iter(path)):
            if index == 3:
                raise demo.VideoReadError(f"{path} is corrupt: decoding stopped after 3 frame(s)")
            yield frame

    monkeypatch.setattr(demo, "iter_video_frames", failing_after_three)
    assert demo.main(args + ["--grid_size", "2"]) == 0
    assert "saving the 3 frame(s) tracked so far" in capsys.readouterr().err
    assert np.load(tmp_path / "out" / "tracks.npz")["tracks"].shape == (3, 4, 2)
