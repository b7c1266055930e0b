"""The Predictor: whole-video and streaming tracking agree, and bad input fails with a clear message."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_model import tiny_config
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.inputs import InputError
from trackon2.model.trackon_predictor import Predictor, get_points_on_a_grid


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=3)


def _video(frames: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, frames, 3, 70, 100, generator=generator) * 255


QUERIES = torch.tensor([[[0, 10.0, 20.0], [2, 50.0, 30.0], [0, 99.0, 69.0], [4, 0.0, 0.0]]])


def test_shapes_and_unstarted_queries(predictor):
    trajectory, visibility = predictor(_video(), QUERIES)
    assert trajectory.shape == (1, 6, 4, 2) and visibility.shape == (1, 6, 4) and visibility.dtype == torch.bool
    assert torch.count_nonzero(trajectory[0, :2, 1]) == 0 and not visibility[0, :4, 3].any()
    assert torch.count_nonzero(trajectory[0, 2:, 1]) > 0


def test_streaming_matches_whole_video(predictor):
    video = _video()
    trajectory, visibility = predictor(video, QUERIES)
    predictor.reset()
    order = torch.argsort(QUERIES[0, :, 0], stable=True)
    for t in range(video.shape[1]):
        new = QUERIES[0, QUERIES[0, :, 0] == t, 1:]
        points, visible = predictor.forward_frame(video[0, t], new if len(new) else None)
        started = order[: points.shape[0]]
        assert torch.allclose(points, trajectory[0, t, started], atol=1e-4)
        assert torch.equal(visible, visibility[0, t, started])
    assert predictor.frame_index == video.shape[1]


def test_uint8_video_is_accepted(predictor):
    video = _video().round()
    as_float, _ = predictor(video, QUERIES)
    as_uint8, _ = predictor(video.to(torch.uint8), QUERIES)
    assert torch.allclose(as_float, as_uint8)


def test_no_queries_tracks_a_grid(predictor):
    video = _video(3)
    trajectory, visibility = predictor(video, None)
    grid = get_points_on_a_grid(32, (70, 100))
    explicit, explicit_visibility = predictor(video, torch.cat([torch.zeros(1, 32 * 32, 1), grid], dim=-1))
    assert trajectory.shape == (1, 3, 32 * 32, 2)
    assert torch.equal(trajectory, explicit) and torch.equal(visibility, explicit_visibility)


def test_progress_bar_is_shown_on_request(predictor, capsys):
    predictor(_video(2), QUERIES[:, :1], progress=True)
    shown = capsys.readouterr().err
    assert "tracking" in shown and "2/2" in shown  # counts the frames
    predictor(_video(2), QUERIES[:, :1])
    assert capsys.readouterr().err == ""


def test_support_grid_leaves_a_margin():
    grid = get_points_on_a_grid(3, (64, 128))
    assert grid.shape == (1, 9, 2)
    assert torch.allclose(grid[0, 0], torch.tensor([2.0, 2.0])) and torch.allclose(grid[0, -1], torch.tensor([126.0, 62.0]))


@pytest.mark.parametrize(
    "video, queries, message",
    [
        (torch.zeros(6, 3, 70, 100), QUERIES, "shape"),
        (torch.zeros(1, 6, 4, 70, 100), QUERIES, "shape"),
        (torch.zeros(2, 6, 3, 70, 100), QUERIES, "B=2"),
        (torch.zeros(1, 6, 3, 70, 100), torch.zeros(1, 0, 3), "empty"),
        (torch.zeros(1, 6, 3, 70, 100), torch.tensor([[[6, 1.0, 1.0]]]), "after the last frame"),
        (torch.zeros(1, 6, 3, 70, 100), torch.tensor([[[0, 101.0, 1.0]]]), "outside"),
        (torch.zeros(1, 6, 3, 70, 100), torch.tensor([[[0, 1.0, -2.0]]]), "outside"),
        (torch.zeros(1, 6, 3, 70, 100), torch.tensor([[[0.5, 1.0, 1.0]]]), "integers"),
        (torch.zeros(1, 6, 3, 70, 100), torch.tensor([[1.0, 1.0]]), "shape"),
        (torch.zeros(1, 6, 3, 70, 100), torch.tensor([[[0, float("nan"), 1.0]]]), "NaN"),
        ([[1, 2]], QUERIES, "torch.Tensor"),
    ],
)
def test_bad_input_is_a_clear_error(predictor, video, queries, message):
    with pytest.raises(InputError, match=message):
        predictor(video, queries)


def test_outside_queries_can_be_allowed_explicitly():
    torch.manual_seed(0)
    lenient = Predictor(tiny_config(), support_grid_size=0, allow_outside_queries=True, pin_query_points=False)
    video = _video(3)
    trajectory, visibility = lenient(video, torch.tensor([[[0, -5.0, 20.0], [1, 120.0, 80.0]]]))
    assert torch.isfinite(trajectory).all() and torch.count_nonzero(trajectory[0, 1:, 1]) > 0
    # An off-screen query takes its features from the nearest border point, as in the reference.
    on_border, border_visibility = lenient(video, torch.tensor([[[0, 0.0, 20.0], [1, 100.0, 70.0]]]))
    assert torch.equal(trajectory, on_border) and torch.equal(visibility, border_visibility)


def test_stream_errors(predictor):
    predictor.reset()
    predictor.forward_frame(_video(1)[0, 0])
    with pytest.raises(InputError, match="size changed"):
        predictor.forward_frame(torch.zeros(3, 50, 50))
    with pytest.raises(InputError, match="outside"):
        predictor.forward_frame(_video(1)[0, 0], torch.tensor([[500.0, 1.0]]))
    with pytest.raises(InputError, match="shape"):
        predictor.forward_frame(torch.zeros(2, 70, 100))
    predictor.reset()
    points, visible = predictor.forward_frame(torch.zeros(3, 50, 50))
    assert points.shape == (0, 2) and visible.shape == (0,)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Predictor(tiny_config(), checkpoint_path=tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        Predictor(tiny_config(), checkpoint_path=corrupt)

    state = Predictor(tiny_config()).model.state_dict()
    foreign = dict(state, **{"head.extra.weight": torch.zeros(2)})
    torch.save({"model": foreign}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="unexpected key"):
        Predictor(tiny_config(), checkpoint_path=tmp_path / "foreign.pt")

    missing = {k: v for k, v in state.items() if not k.startswith("fpn.")}
    torch.save(missing, tmp_path / "missing_fpn.pt")
    with pytest.raises(CheckpointError, match="missing key"):
        Predictor(tiny_config(), checkpoint_path=tmp_path / "missing_fpn.pt")

    torch.save(state, tmp_path / "ok.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        Predictor(tiny_config(K=4, D=32, rerank_layer_num=2), checkpoint_path=tmp_path / "ok.pt")


def test_released_style_checkpoint_without_vit_loads(tmp_path):
    torch.manual_seed(1)
    source = Predictor(tiny_config(M_i=4))
    state = {"module." + k: v for k, v in source.model.state_dict().items()
             if not k.startswith("backbone.vit_encoder.dinov2.")}
    torch.save({"state_dict": state}, tmp_path / "released.pt")
    torch.manual_seed(2)
    loaded = Predictor(tiny_config(M_i=4), checkpoint_path=tmp_path / "released.pt")
    assert torch.equal(loaded.model.fpn.output[0].weight, source.model.fpn.output[0].weight)
    assert torch.equal(loaded.model.t_embedding, source.model.t_embedding)
