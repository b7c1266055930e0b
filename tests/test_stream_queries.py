"""Streaming query management: stable ids, removal (memory freed, others unaffected) and per-point confidence."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_model import tiny_config
from trackon2.model.inputs import InputError
from trackon2.model.memory import QueryMemory
from trackon2.model.trackon import active_columns, scatter_columns
from trackon2.model.trackon_predictor import Predictor

HEIGHT, WIDTH = 70, 100


@pytest.fixture()
def predictor(float64_default) -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=2, pin_query_points=False).double()


def _frames(count: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(count, 3, HEIGHT, WIDTH, generator=generator, dtype=torch.float64) * 255


def _reference_run(predictor: Predictor, frames: torch.Tensor, queries: torch.Tensor, first: list[int],
                   last: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Support grid + ``queries`` (n, 2) through the model's own step, query i active on frames [first[i], last[i]).

    Returns points (T, n, 2) in frame pixels and u_logit (T, n); entries outside a query's span are not used.
    """
    model = predictor.model
    support = predictor._support_queries(HEIGHT, WIDTH, frames.device)[0, :, 1:]
    coords = torch.cat([support, queries]) / torch.tensor([WIDTH, HEIGHT], dtype=frames.dtype)
    num_support = support.shape[0]
    start = torch.tensor([0] * num_support + first)
    stop = torch.tensor([len(frames)] * num_support + last)
    q_init = memory = None
    points, u_logits = [], []
    for t, frame in enumerate(frames):
        features = model.encode(model.resize_frames(frame[None]))
        if memory is None:
            q_init = features.fused.new_zeros(1, len(coords), model.D)
            memory = QueryMemory.empty_like(1, len(coords), predictor.memory_size, q_init)
        starting, active = (start == t)[None], ((start <= t) & (t < stop))[None]
        q_init = model.start_queries(q_init, features, coords[None], starting, active_columns(starting))
        columns = active_columns(active)
        step = model.decode(q_init[:, columns], features, memory.columns(columns), ~active[:, columns])
        model.write_memory(memory, columns, step.q, active)
        p = scatter_columns(step.points, columns, active[:, columns], len(coords), 1, step.points.dtype)
        u = scatter_columns(step.u_logit, columns, active[:, columns], len(coords), 1, step.u_logit.dtype)
        points.append(model.to_input_pixels(p[0, num_support:], HEIGHT, WIDTH))
        u_logits.append(u[0, num_support:])
    return torch.stack(points), torch.stack(u_logits)


def test_ids_are_stable_and_returned_when_added(predictor):
    frames = _frames(3)
    first = predictor.add_queries(torch.tensor([[10.0, 20.0], [30.0, 40.0]]))
    assert first == [0, 1] and predictor.query_ids == [0, 1]
    tracks = predictor.track_frame(frames[0])
    assert tracks.ids == [0, 1] and tracks.points.shape == (2, 2) and tracks.confidence.shape == (2,)
    later = predictor.add_queries(torch.tensor([[50.0, 60.0]]))
    predictor.remove_queries([0])
    tracks = predictor.track_frame(frames[1])
    assert later == [2] and tracks.ids == [1, 2]
    points, visible = predictor.forward_frame(frames[2], torch.tensor([[5.0, 5.0]]))
    assert predictor.query_ids == [1, 2, 3] and points.shape == (3, 2) and visible.shape == (3,)
    predictor.reset()
    assert predictor.add_queries(torch.tensor([[1.0, 1.0]])) == [0]


def test_removed_queries_free_memory_and_the_others_continue_exactly(predictor):
    """Query b lives on frames 1-2 only; a and c must match the model run with b inactive from frame 3 on."""
    frames = _frames(6)
    queries = torch.tensor([[12.0, 15.0], [60.0, 33.0], [80.0, 50.0]], dtype=torch.float64)
    got_points, got_confidence = [], []
    a, = predictor.add_queries(queries[:1])
    b, c = None, None
    for t, frame in enumerate(frames):
        if t == 1:
            b, c = predictor.add_queries(queries[1:])
        if t == 3:
            slots_before = predictor._tracker.state.memory.features.shape[1]
            predictor.remove_queries([b])
            assert predictor._tracker.state.memory.features.shape[1] == slots_before - 1 and predictor.query_ids == [a, c]
        tracks = predictor.track_frame(frame)
        keep = [i for i, query_id in enumerate(tracks.ids) if query_id in (a, c)]
        got_points.append(tracks.points[keep])
        got_confidence.append(tracks.confidence[keep])
    expected_points, u_logit = _reference_run(predictor, frames, queries, first=[0, 1, 1], last=[6, 3, 6])
    assert torch.allclose(got_points[0], expected_points[0, :1], rtol=0, atol=1e-9)
    for t in range(1, 6):
        assert torch.allclose(got_points[t], expected_points[t, [0, 2]], rtol=0, atol=1e-9)
        assert torch.allclose(got_confidence[t], torch.sigmoid(-u_logit[t, [0, 2]]), rtol=0, atol=1e-9)


def test_a_query_removed_before_its_first_frame_leaves_no_trace(predictor):
    frames = _frames(4)
    without = []
    predictor.add_queries(torch.tensor([[12.0, 15.0], [80.0, 50.0]]))
    for frame in frames:
        without.append(predictor.track_frame(frame).points)
    predictor.reset()
    predictor.add_queries(torch.tensor([[12.0, 15.0], [40.0, 20.0], [80.0, 50.0]]))
    predictor.remove_queries([1])
    for frame, expected in zip(frames, without):
        tracks = predictor.track_frame(frame)
        assert tracks.ids == [0, 2] and torch.equal(tracks.points, expected)


def test_query_management_errors(predictor):
    predictor.add_queries(torch.tensor([[WIDTH + 50.0, 1.0]]))
    with pytest.raises(InputError, match="outside"):
        predictor.track_frame(_frames(1)[0])
    assert predictor.query_ids == [] and predictor.track_frame(_frames(1)[0]).ids == []
    predictor.reset()
    with pytest.raises(InputError, match=r"no query with id\(s\) \[7\]"):
        predictor.remove_queries([7])
    with pytest.raises(InputError, match="shape"):
        predictor.add_queries(torch.zeros(3))
    predictor.track_frame(_frames(1)[0])
    with pytest.raises(InputError, match="outside"):
        predictor.add_queries(torch.tensor([[WIDTH + 5.0, 1.0]]))
    assert predictor.query_ids == []
