"""The web app's pieces without a browser: clips and their points, exports, live sessions, handler messages."""

from __future__ import annotations

import contextlib
import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")

from tests.tiny_model import tiny_config  # noqa: E402
from trackon2.model.inputs import InputError  # noqa: E402
from trackon2.model.trackon_predictor import Predictor  # noqa: E402
from trackon2.video.files import write_video  # noqa: E402
from trackon2.webapp.clip import Clip, load_clip  # noqa: E402
from trackon2.webapp.live import LiveSession, session_predictor  # noqa: E402
from trackon2.webapp.run import track_clip  # noqa: E402
from trackon2.webapp.ui import App  # noqa: E402


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=2)


def _frames(count: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def test_clip_points_undo_clear_grid_and_bad_clicks():
    clip = Clip("clip", _frames(), fps=8.0)
    clip.add_point(2, 10, 20)
    clip.add_point(0, 30, 5)
    assert clip.query_array().tolist() == [[2, 10, 20], [0, 30, 5]]
    clip.undo()
    assert len(clip.queries) == 1 and "1 point(s)" in clip.describe_points()
    clip.add_grid(1, 3)
    assert len(clip.queries) == 10 and np.all(clip.query_array()[1:, 0] == 1)
    clip.clear()
    assert clip.queries == []
    with pytest.raises(InputError, match=r"point \(70, 5\) is outside the 64x48 image"):
        clip.add_point(0, 70, 5)
    with pytest.raises(InputError, match="frame 9 does not exist"):
        clip.add_point(9, 1, 1)
    with pytest.raises(InputError, match="grid size"):
        clip.add_grid(0, 0)
    drawn = Clip("clip", _frames(), fps=8.0)
    drawn.add_point(1, 10, 10)
    assert np.any(drawn.frame_with_points(1) != drawn.frames[1])
    assert np.any(drawn.frame_with_points(0) != drawn.frames[0])


def test_load_clip_keeps_at_most_max_frames(tmp_path):
    write_video(tmp_path / "clip.mp4", _frames(6), fps=6)
    clip = load_clip(tmp_path / "clip.mp4", max_frames=4)
    assert len(clip.frames) == 4 and clip.truncated and clip.fps == pytest.approx(6)


def test_track_clip_writes_matching_npz_json_csv(tmp_path, predictor):
    clip = Clip("clip", _frames(), fps=8.0)
    clip.add_point(2, 10.0, 20.0)
    clip.add_point(0, 40.0, 30.0)
    run = track_clip(clip, session_predictor(predictor), tmp_path / "run", contextlib.nullcontext())
    saved = np.load(run.npz)
    assert saved["tracks"].shape == (5, 2, 2) and saved["confidence"].shape == (5, 2)
    assert saved["tracks"][2, 0].tolist() == [10.0, 20.0] and saved["tracks"][0, 1].tolist() == [40.0, 30.0]
    assert np.all(saved["tracks"][:2, 0] == 0) and not saved["visibility"][:2, 0].any()
    assert json.loads(run.json.read_text())["tracks"] == saved["tracks"].tolist()
    rows = list(csv.DictReader(run.csv.open()))
    assert len(rows) == 3 + 5 and rows[0]["point"] == "0" and rows[0]["frame"] == "2"
    assert float(rows[0]["x"]) == 10.0 and run.overlay.stat().st_size > 0


def test_live_sessions_are_isolated_and_points_can_be_cleared(predictor):
    first, second = LiveSession(predictor), LiveSession(predictor)
    frame = _frames(1)[0]
    first.process(frame)
    second.process(frame)
    first.add_point(10, 10)
    first.add_point(20, 30)
    drawn = first.process(frame)
    second.process(frame)
    assert first.point_count == 2 and second.point_count == 0 and predictor.query_ids == []
    assert drawn.shape == frame.shape and np.any(drawn != frame)
    with pytest.raises(InputError, match="outside the 64x48 image"):
        first.add_point(100, 10)
    first.clear()
    first.process(frame)
    assert first.point_count == 0 and "0 point(s)" in first.status() and "frames/s" in first.status()


def test_handlers_report_bad_input_as_a_message(tmp_path, predictor):
    app = App(predictor, contextlib.nullcontext, max_frames=10, work_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("not a video")
    *_, status = app.open_video(str(tmp_path / "notes.txt"))
    assert status.startswith("⚠️") and "notes.txt" in status
    assert "upload a video" in app.track(None)[2]
    write_video(tmp_path / "clip.mp4", _frames(3), fps=3)
    clip, *_ = app.open_video(str(tmp_path / "clip.mp4"))
    assert "no points to track" in app.track(clip)[2]
    assert "click inside the image" in app.click_point(clip, 0, SimpleNamespace(index=None))[3]
    assert "outside the 64x48 image" in app.click_point(clip, 0, SimpleNamespace(index=[80, 10]))[3]
    assert "start the camera first" in app.live_click(None, SimpleNamespace(index=[1, 1]))[0]


def test_app_model_options(tmp_path, capsys):
    import yaml

    from trackon2 import app
    from trackon2.utils.model_options import build_predictor

    assert app.main(["--config", "config/test.yaml", "--checkpoint", "none"]) == 1
    assert "needs a config with backbone_config" in capsys.readouterr().err
    assert app.main(["--support_grid_size", "-1"]) == 1 and "--support_grid_size" in capsys.readouterr().err
    assert app.main(["--max_frames", "0"]) == 1 and "--max_frames" in capsys.readouterr().err
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(vars(tiny_config())))
    args = app.parse_args(["--config", str(tmp_path / "tiny.yaml"), "--checkpoint", "none", "--port", "7999",
                           "--support_grid_size", "3"])
    assert (args.host, args.port) == ("127.0.0.1", 7999)
    assert build_predictor(args).support_grid_size == 3
