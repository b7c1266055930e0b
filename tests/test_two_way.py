"""Tracking in both directions and the query-frame rule: the forward half is the forward-only run, the backward
half a forward-only run on the reversed clip, and a point on its own query frame is the query point."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.tiny_model import tiny_config
from trackon2.model.trackon_predictor import Predictor
from trackon2.runtime.two_way import BackwardPlan, reversed_clip, track_two_way

QUERIES = torch.tensor([[[0, 10.0, 20.0], [3, 50.0, 30.0], [5, 99.0, 69.0], [3, 1.0, 2.0]]])
STARTS = QUERIES[0, :, 0].long()


def _video(frames: int = 8, seed: int = 0, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, 70, 100, generator=generator) * 255


def _predictor(**options) -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=3, **options)


@pytest.fixture(scope="module")
def predictors() -> dict[str, Predictor]:
    """Four views of the same weights: forward-only / two-way, query frame pinned / the model's estimate."""
    base = _predictor(pin_query_points=False)
    views = {}
    for backward in (False, True):
        for pin in (False, True):
            view = copy.copy(base)
            view.backward_tracking, view.pin_query_points = backward, pin
            views[f"{'two_way' if backward else 'forward'}_{'pinned' if pin else 'model'}"] = view
    return views


def test_forward_half_is_the_forward_only_run_and_backward_half_the_reversed_clip(predictors):
    video = _video()
    forward, forward_visible = predictors["forward_model"](video, QUERIES)
    both, both_visible = predictors["two_way_model"](video, QUERIES)
    last = int(STARTS.max())
    later = STARTS > 0
    reversed_queries = torch.cat([(last - QUERIES[0, later, :1]), QUERIES[0, later, 1:]], dim=1)[None]
    backward, backward_visible = predictors["forward_model"](reversed_clip(video, last), reversed_queries)
    columns = torch.nonzero(later).flatten()
    for n in range(QUERIES.shape[1]):
        start = int(STARTS[n])
        assert torch.equal(both[0, start:, n], forward[0, start:, n])
        assert torch.equal(both_visible[0, start:, n], forward_visible[0, start:, n])
        if start == 0:
            continue
        k = int(torch.nonzero(columns == n))
        frames = torch.arange(start)
        assert torch.equal(both[0, :start, n], backward[0, last - frames, k])
        assert torch.equal(both_visible[0, :start, n], backward_visible[0, last - frames, k])
        assert torch.count_nonzero(both[0, :start, n]) > 0  # really filled in, not the forward run's zeros


def test_backward_pass_is_one_batched_pass_over_frames_up_to_the_last_query_frame():
    calls = []

    origins = []

    def track(video, queries, origin):
        calls.append((video.clone(), queries.clone()))
        origins.append(origin)
        count = queries.shape[1]
        frames = torch.arange(video.shape[1], dtype=torch.float32)
        return (frames[None, :, None].expand(1, -1, count) + 100 * len(calls),)

    video = torch.arange(10, dtype=torch.float32).reshape(1, 10, 1)
    (merged,) = track_two_way(track, video, QUERIES)
    assert len(calls) == 2 and origins == [None, (0, 5)]
    clip, queries = calls[1]
    assert clip.flatten().tolist() == [5, 4, 3, 2, 1, 0]  # frames last..0, nothing after the latest query frame
    assert queries[0, :, 0].tolist() == [2, 0, 2]  # the three queries that start after frame 0, at last - t
    assert torch.equal(queries[0, :, 1:], QUERIES[0, 1:, 1:])
    # query 2 starts on frame 5: its frames 0..4 come from reversed frames 5..1 of the backward pass
    assert merged[0, :, 2].tolist() == [205, 204, 203, 202, 201, 105, 106, 107, 108, 109]
    assert merged[0, :, 0].tolist() == [100 + t for t in range(10)]


def test_all_queries_on_frame_0_or_none_is_the_forward_run(predictors):
    video = _video(5)
    queries = QUERIES.clone()
    queries[..., 0] = 0
    for given in (queries, None):
        forward = predictors["forward_pinned"](video, given)
        both = predictors["two_way_pinned"](video, given)
        assert all(torch.equal(a, b) for a, b in zip(forward, both))
    assert BackwardPlan.of(queries[0]) is None


def test_batched_videos_each_match_being_tracked_alone(predictors):
    video = _video(batch=2, seed=3)
    queries = torch.stack([QUERIES[0], QUERIES[0].flip(0)])
    queries[1, :, 0] = torch.tensor([2.0, 0, 0, 1])
    both, visible = predictors["two_way_pinned"](video, queries)
    for b in range(2):
        alone, alone_visible = predictors["two_way_pinned"](video[b : b + 1], queries[b : b + 1])
        assert torch.allclose(both[b], alone[0], atol=1e-4)
        assert torch.equal(visible[b], alone_visible[0])


def test_pinned_query_frame_is_the_query_point_and_nothing_else_changes(predictors):
    video = _video()
    model, model_visible = predictors["forward_model"](video, QUERIES)
    pinned, pinned_visible = predictors["forward_pinned"](video, QUERIES)
    columns = torch.arange(QUERIES.shape[1])
    assert torch.equal(pinned[0, STARTS, columns], QUERIES[0, :, 1:])
    assert pinned_visible[0, STARTS, columns].all()
    pinned[0, STARTS, columns] = model[0, STARTS, columns]
    pinned_visible[0, STARTS, columns] = model_visible[0, STARTS, columns]
    assert torch.equal(pinned, model) and torch.equal(pinned_visible, model_visible)
    assert not torch.equal(model[0, STARTS, columns], QUERIES[0, :, 1:])  # the rule changes something


def test_streams_pin_the_query_frame_and_stay_forward_only():
    predictor = _predictor(backward_tracking=True)
    video = _video(4)
    with pytest.warns(UserWarning, match="streams are tracked forward only"):
        predictor.track_frame(video[0, 0], torch.tensor([[10.0, 20.0]]))
    tracks = predictor.track_frame(video[0, 1], torch.tensor([[50.0, 30.0], [7.0, 8.0]]))
    assert tracks.ids == [0, 1, 2]
    assert tracks.points[1:].tolist() == [[50.0, 30.0], [7.0, 8.0]]
    assert tracks.visible[1:].all() and tracks.confidence[1:].tolist() == [1.0, 1.0]
    assert tracks.points[0].tolist() != [10.0, 20.0]  # started a frame earlier: the model's estimate
    model = _predictor(pin_query_points=False)
    model.track_frame(video[0, 0], torch.tensor([[10.0, 20.0]]))
    estimate = model.track_frame(video[0, 1], torch.tensor([[50.0, 30.0], [7.0, 8.0]]))
    assert torch.equal(estimate.points[0], tracks.points[0])
    assert not torch.equal(estimate.points[1:], tracks.points[1:])


def test_the_backward_pass_reuses_the_forward_passs_encoded_frames(predictors, monkeypatch):
    """Frames 0..last are encoded once: the backward pass steps over the forward pass's encodings, with the same
    result as encoding them again (a zero budget)."""
    import trackon2.runtime.predictor as predictor_module

    predictor = predictors["two_way_model"]
    video = _video(8)
    encoded = []
    plain_encode = predictor.model.encode
    monkeypatch.setattr(predictor.model, "encode", lambda frames: encoded.append(1) or plain_encode(frames))
    reused = predictor(video, QUERIES)
    assert len(encoded) == 8  # forward only; the backward pass's 6 frames (5..0) are not encoded again
    encoded.clear()
    monkeypatch.setattr(predictor_module, "ENCODED_FRAMES_BUDGET", 0)
    again = predictor(video, QUERIES)
    assert len(encoded) == 8 + 6
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(reused, again))
