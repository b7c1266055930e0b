"""``demo.py --backward``: the same tracks as without it from each query's frame on, and tracks before it too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_demo import _setup
from trackon2 import demo


def test_backward_adds_the_frames_before_each_query_and_keeps_the_rest(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps([[3, 10, 10], [0, 50, 40]]))
    argv = _setup(tmp_path, frames=6) + ["--queries_json", str(tmp_path / "q.json")]
    assert demo.main(argv + ["--no_video"]) == 0
    forward = dict(np.load(tmp_path / "out" / "tracks.npz"))
    assert demo.main(argv + ["--backward"]) == 0
    both = dict(np.load(tmp_path / "out" / "tracks.npz"))
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0
    assert both["tracks"].shape == (6, 2, 2) and both["confidence"].shape == (6, 2)
    assert np.allclose(both["tracks"][3:, 0], forward["tracks"][3:, 0], atol=1e-4)
    assert np.array_equal(both["visibility"][3:, 0], forward["visibility"][3:, 0])
    assert np.allclose(both["tracks"][:, 1], forward["tracks"][:, 1], atol=1e-4)  # starts on frame 0
    assert both["tracks"][3, 0].tolist() == [10.0, 10.0] == forward["tracks"][3, 0].tolist()  # the query point
    assert np.all(forward["tracks"][:3, 0] == 0) and np.all(both["tracks"][:3, 0] != 0)


def test_backward_is_refused_for_live_sources(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--video", "0", "--backward"])
    assert "--backward needs a video file" in capsys.readouterr().err
