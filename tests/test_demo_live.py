"""demo.py on live sources: a file played in real time (frames dropped when behind), Ctrl-C, bad camera."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.test_demo import _setup
from trackon2 import demo
from trackon2.model.trackon_predictor import Predictor
from trackon2.video.files import write_video
from trackon2.video.live_source import is_live_source
from trackon2.video.live_tracking import PreviewWindow


def _fast_clip(tmp_path, frames: int, fps: float) -> str:
    rng = np.random.default_rng(1)
    path = tmp_path / "fast.mp4"
    write_video(path, [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(frames)], fps)
    return str(path)


def test_live_sources_are_recognised():
    assert is_live_source("0", False) and is_live_source("rtsp://cam.local/stream", False)
    assert is_live_source("HTTP://host/video.mjpg", False) and is_live_source("clip.mp4", True)
    assert not is_live_source("clip.mp4", False)


def test_realtime_file_drops_frames_when_tracking_is_slower(tmp_path, capsys):
    clip = _fast_clip(tmp_path, frames=12, fps=240)
    assert demo.main(_setup(tmp_path) + ["--video", clip, "--realtime", "--grid_size", "2"]) == 0
    saved = np.load(tmp_path / "out" / "tracks.npz")
    tracked = len(saved["source_frame"])
    assert 1 <= tracked < 12 and saved["source_frame"][0] == 0 and saved["source_frame"][-1] == 11
    assert np.all(np.diff(saved["source_frame"]) >= 1)
    assert saved["tracks"].shape == (tracked, 4, 2) and saved["confidence"].shape == (tracked, 4)
    assert np.all((saved["confidence"] >= 0) & (saved["confidence"] <= 1))
    assert json.loads((tmp_path / "out" / "tracks.json").read_text())["source_frame"] == saved["source_frame"].tolist()
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0
    err = capsys.readouterr().err
    assert f"{tracked} frame(s) tracked at" in err and f", {12 - tracked} dropped" in err


@pytest.mark.slow
def test_ctrl_c_stops_and_saves_what_was_tracked(tmp_path, monkeypatch, capsys):
    clip = _fast_clip(tmp_path, frames=20, fps=2)
    real_track_frame = Predictor.track_frame
    calls = []

    def interrupted_on_third(self, frame, new_queries=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_track_frame(self, frame, new_queries)

    monkeypatch.setattr(Predictor, "track_frame", interrupted_on_third)
    assert demo.main(_setup(tmp_path) + ["--video", clip, "--realtime", "--grid_size", "2"]) == 0
    assert "stopped by Ctrl-C" in capsys.readouterr().err
    saved = np.load(tmp_path / "out" / "tracks.npz")
    assert saved["tracks"].shape == (2, 4, 2) and saved["source_frame"][0] == 0
    assert np.all(np.diff(saved["source_frame"]) >= 1)
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0


@pytest.mark.parametrize("video, message", [("9", "could not open camera 9"),
                                            ("missing.mp4", "video not found")])
def test_unopenable_live_source_is_a_clear_error(tmp_path, capsys, video, message):
    args = _setup(tmp_path) + ["--video", video, "--realtime"]
    assert demo.main(args) == 1
    assert message in capsys.readouterr().err


def test_random_weights_and_max_frames_on_a_live_source(tmp_path):
    args = _setup(tmp_path)
    args[args.index("--checkpoint") + 1] = "none"
    clip = _fast_clip(tmp_path, frames=6, fps=6)
    assert demo.main(args + ["--video", clip, "--realtime", "--max_frames", "2", "--no_video"]) == 0
    saved = np.load(tmp_path / "out" / "tracks.npz")
    assert saved["tracks"].shape == (2, 256, 2) and not (tmp_path / "out" / "overlay.mp4").exists()


def test_live_queries_outside_the_frame_are_refused_before_tracking(tmp_path, capsys):
    (tmp_path / "q.json").write_text(json.dumps([[0, 10, 10], [3, 500, 10]]))
    clip = _fast_clip(tmp_path, frames=4, fps=4)
    args = _setup(tmp_path) + ["--video", clip, "--realtime", "--queries_json", str(tmp_path / "q.json")]
    assert demo.main(args) == 1
    assert "outside the 96x72 frame" in capsys.readouterr().err


@pytest.mark.slow
def test_show_without_a_display_warns_and_keeps_tracking(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    clip = _fast_clip(tmp_path, frames=3, fps=3)
    assert demo.main(_setup(tmp_path) + ["--video", clip, "--realtime", "--show", "--no_video"]) == 0
    err = capsys.readouterr().err
    assert err.count("--show needs a display") == 1 and "frame(s) tracked" in err


def test_show_with_a_headless_opencv_warns_once(monkeypatch, capsys):
    import cv2

    def no_gui(*args):
        raise cv2.error("The function is not implemented")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", no_gui)
    window = PreviewWindow(True)
    assert window.show(np.zeros((4, 4, 3), np.uint8)) and window.show(np.zeros((4, 4, 3), np.uint8))
    assert not window.enabled and capsys.readouterr().err.count("GUI support") == 1
