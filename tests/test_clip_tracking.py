"""Decoded clips tracked in both directions (the web app's Video tab, ``demo.py --backward``): the forward half is
the forward-only stream, the backward half a stream over the reversed clip, and the downloads hold both."""

from __future__ import annotations

import contextlib
import csv
import json

import numpy as np
import pytest
import torch

from tests.tiny_model import tiny_config
from trackon2.model.trackon_predictor import Predictor
from trackon2.video.clip_tracking import frames_to_track, track_frames

QUERIES = np.array([[3, 10.0, 20.0], [0, 40.0, 30.0], [5, 50.0, 10.0]], np.float32)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=2)


def _frames(count: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def test_both_halves_are_forward_only_streams(predictor):
    frames = _frames()
    done = []
    both = track_frames(frames, QUERIES, predictor, backward=True, on_frame=done.append)
    forward = track_frames(frames, QUERIES, predictor, backward=False)
    assert done == list(range(1, frames_to_track(8, QUERIES, True) + 1)) and len(done) == 8 + 6
    later = QUERIES[:, 0] > 0
    reversed_queries = np.concatenate([5 - QUERIES[later, :1], QUERIES[later, 1:]], axis=1)
    backward = track_frames(frames[5::-1], reversed_queries, predictor, backward=False)
    for n, start in enumerate(QUERIES[:, 0].astype(int)):
        for key in ("tracks", "visibility", "confidence"):
            assert np.array_equal(both[key][start:, n], forward[key][start:, n]), key
            if start:
                k = np.flatnonzero(later).tolist().index(n)
                assert np.array_equal(both[key][:start, n], backward[key][5 - np.arange(start), k]), key
    assert both["tracks"][QUERIES[:, 0].astype(int), np.arange(3)].tolist() == QUERIES[:, 1:].tolist()
    assert both["visibility"][:3, 0].any() and not forward["visibility"][:3, 0].any()
    assert np.all(forward["tracks"][:3, 0] == 0)


def test_app_downloads_hold_the_backward_part_and_the_frame_view_draws_both_trails(tmp_path, predictor):
    pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
    from trackon2.webapp.clip import Clip
    from trackon2.webapp.live import session_predictor
    from trackon2.webapp.run import track_clip

    clip = Clip("clip", _frames(), fps=8.0)
    for t, x, y in QUERIES:
        clip.add_point(int(t), float(x), float(y))
    run = track_clip(clip, session_predictor(predictor), tmp_path / "run", contextlib.nullcontext(), backward=True)
    saved = np.load(run.npz)
    assert saved["first_frame"].tolist() == [0, 0, 0]
    assert np.all(saved["tracks"][:3, 0] != 0) and saved["tracks"][3, 0].tolist() == [10.0, 20.0]
    assert json.loads(run.json.read_text())["tracks"] == saved["tracks"].tolist()
    rows = list(csv.DictReader(run.csv.open()))
    assert len(rows) == 3 * 8 and rows[0]["point"] == "0" and rows[0]["frame"] == "0"
    untracked = clip.frame_with_points(1)
    clip.tracked = run.result
    with_trails = clip.frame_with_points(1)
    assert np.count_nonzero(with_trails != untracked) > 0
    clip.add_point(1, 5.0, 5.0)
    assert clip.tracked is None  # new points: the old tracks are not shown
