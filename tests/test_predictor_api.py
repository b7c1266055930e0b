"""Predictor conveniences a notebook user reaches for: ``save`` / reload, ``device``, numpy frames from a decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tiny_model import tiny_config
from trackon2.model.inputs import InputError
from trackon2.model.trackon_predictor import Predictor


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=2)


def _video(frames: int = 4) -> torch.Tensor:
    return torch.rand(1, frames, 3, 48, 64, generator=torch.Generator().manual_seed(1)) * 255


QUERIES = torch.tensor([[[0, 10.0, 20.0], [1, 40.0, 30.0]]])


def test_saved_weights_reload_into_an_identical_predictor(predictor, tmp_path):
    path = predictor.save(tmp_path / "sub" / "mine.pt")
    reloaded = Predictor(tiny_config(), checkpoint_path=path, support_grid_size=2)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert saved["t_embedding"].shape[1] == tiny_config().M + 1  # the training size, as a training checkpoint
    assert any(name.startswith("backbone.vit_encoder.") for name in saved)  # a random ViT must travel along
    video = _video()
    expected, expected_visible = predictor(video, QUERIES)
    got, got_visible = reloaded(video, QUERIES)
    assert torch.equal(got, expected) and torch.equal(got_visible, expected_visible)


def test_device_names_where_the_weights_are(predictor):
    assert predictor.device == torch.device("cpu")
    assert predictor.device == next(predictor.model.parameters()).device


def test_numpy_uint8_frames_from_a_decoder_are_accepted(predictor):
    frames = _video().round().to(torch.uint8)[0]  # (T, 3, H, W)
    predictor.reset()
    as_tensor = [predictor.forward_frame(frame, QUERIES[0, :1, 1:] if t == 0 else None)[0] for t, frame in
                 enumerate(frames)]
    predictor.reset()
    as_numpy = [predictor.forward_frame(frame.permute(1, 2, 0).numpy(), QUERIES[0, :1, 1:] if t == 0 else None)[0]
                for t, frame in enumerate(frames)]
    for a, b in zip(as_tensor, as_numpy):
        assert torch.equal(a, b)
    predictor.reset()
    tracks = predictor.track_frame(np.ascontiguousarray(frames[0].permute(1, 2, 0).numpy()[..., ::-1])[..., ::-1],
                                   torch.tensor([[5.0, 5.0]]))
    assert tracks.points.shape == (1, 2)


def test_a_numpy_frame_of_the_wrong_shape_is_named(predictor):
    predictor.reset()
    with pytest.raises(InputError, match=r"numpy frame must be an \(H, W, 3\) RGB image, got shape \(48, 64\)"):
        predictor.track_frame(np.zeros((48, 64), np.uint8))
