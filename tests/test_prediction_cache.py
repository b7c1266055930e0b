"""Cached predictions: reused for the same tracker identity, dataset and video; never for another."""

from __future__ import annotations

import torch

from trackon2.dataset.eval_sample import EvalSample
from trackon2.evaluation.prediction_cache import PredictionCache

IDENTITY = {"tracker": "trackon2", "checkpoint": "/x.pt", "checkpoint_mtime_ns": 1, "config": {"M_i": 24}}


def _sample(name: str = "v", shift: float = 0.0) -> EvalSample:
    queries = torch.tensor([[0.0, 1.0 + shift, 2.0], [1.0, 3.0, 4.0]])
    return EvalSample(torch.zeros(3, 3, 8, 8), queries, torch.zeros(3, 2, 2), torch.ones(3, 2, dtype=torch.bool),
                      torch.ones(3, 2, dtype=torch.bool), name)


def test_reused_for_the_same_identity_and_video(tmp_path) -> None:
    cache = PredictionCache(tmp_path, {"dataset_name": "davis", "dataset_path": "/d.pkl"})
    tracks, visible = torch.rand(3, 2, 2), torch.rand(3, 2) > 0.5
    cache.store("a", IDENTITY, 4, _sample(), tracks, visible)
    loaded = cache.load("a", dict(IDENTITY), 4, _sample())
    assert loaded is not None and torch.equal(loaded[0], tracks) and torch.equal(loaded[1], visible)
    assert (cache.folder("a", IDENTITY) / "settings.json").is_file()
    assert cache.load("a", IDENTITY, 5, _sample()) is None  # another video index


def test_never_reused_when_a_setting_or_the_video_changes(tmp_path) -> None:
    cache = PredictionCache(tmp_path, {"dataset_name": "davis", "dataset_path": "/d.pkl"})
    cache.store("a", IDENTITY, 0, _sample(), torch.rand(3, 2, 2), torch.ones(3, 2, dtype=torch.bool))
    for changed in ({"checkpoint_mtime_ns": 2}, {"config": {"M_i": 72}}, {"tracker": "track-on-r"}):
        assert cache.load("a", {**IDENTITY, **changed}, 0, _sample()) is None
    other_path = PredictionCache(tmp_path, {"dataset_name": "davis", "dataset_path": "/e.pkl"})
    assert other_path.load("a", IDENTITY, 0, _sample()) is None
    assert cache.load("a", IDENTITY, 0, _sample(shift=0.5)) is None  # other queries
    assert cache.load("a", IDENTITY, 0, _sample(name="w")) is None
    assert cache.load("a", None, 0, _sample()) is None  # a tracker without an identity is never cached


def test_a_file_cut_short_is_recomputed(tmp_path) -> None:
    cache = PredictionCache(tmp_path, {"dataset_name": "davis"})
    cache.store("a", IDENTITY, 0, _sample(), torch.rand(3, 2, 2), torch.ones(3, 2, dtype=torch.bool))
    path = cache.folder("a", IDENTITY) / "000000.npz"
    path.write_bytes(path.read_bytes()[:50])
    assert cache.load("a", IDENTITY, 0, _sample()) is None
