"""The per-frame step at run time: no host synchronisation, bf16 autocast, and batches of independent videos."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model.trackon import StepPlan, TrackOn2
from model.trackon_predictor import Predictor
from tests.tiny_model import tiny_config, tiny_model_config

# Ops that copy a device value to the host (and so wait for the GPU) or that need such a copy to size a result.
SYNCING_OPS = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item")


class OpRecorder(TorchDispatchMode):
    """Records the name of every aten op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _frames(count: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_all_active_step_never_reads_the_device_back():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).eval()
    frames = _frames(3, model.input_size)
    coords = torch.rand(1, 7, 2, generator=torch.Generator().manual_seed(1))
    times = torch.zeros(1, 7, dtype=torch.long)
    state = None
    with torch.inference_mode():
        for t in range(frames.shape[0]):
            plan = StepPlan.from_times(times, t, model.M, frames.device)
            recorder = OpRecorder()
            with recorder:
                frame = model.encode(frames[t:t + 1])
                state = state or model.init_state(1, 7, frame.fused)
                points, _, _ = model.step(state, frame, coords, times == t, times <= t, plan)
            assert len(recorder.ops) > 100  # the recorder did see the step
            syncing = sorted({op for op in recorder.ops if op.startswith(SYNCING_OPS)})
            assert syncing == [], f"frame {t}: host synchronising ops {syncing}"
            assert torch.isfinite(points).all()


def test_the_recorder_sees_the_synchronising_path():
    """Without a host-side plan the step reads its masks back (nonzero / item): the recorder must notice."""
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).eval()
    frame_pixels = _frames(1, model.input_size)
    times = torch.tensor([[0, 0, 1]])
    recorder = OpRecorder()
    with torch.inference_mode():
        frame = model.encode(frame_pixels)
        state = model.init_state(1, 3, frame.fused)
        with recorder:
            model.step(state, frame, torch.rand(1, 3, 2), times == 0, times <= 0)
    assert any(op.startswith(SYNCING_OPS) for op in recorder.ops)


def test_bf16_autocast_runs_and_roughly_agrees_with_float32():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).eval()
    video = _frames(4, (64, 96), seed=2).unsqueeze(0) * 255
    queries = torch.tensor([[[0, 10.0, 12.0], [0, 50.0, 30.0], [1, 80.0, 40.0], [0, 30.0, 50.0]]])
    reference = model.forward_online(video, queries)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = model.forward_online(video, queries)
    assert torch.isfinite(reduced["P"]).all() and torch.isfinite(reduced["V_logit"]).all()
    started = (queries[0, :, 0][None, :] <= torch.arange(4)[:, None])[None]
    distance = (reduced["P"].float() - reference["P"]).norm(dim=-1)[started]
    assert distance.median() < 2.0, f"bf16 points are {distance.median():.2f} px from float32 (median)"
    assert (reduced["V_logit"].float() - reference["V_logit"]).abs().max() < 0.5


def test_a_batch_of_videos_matches_tracking_each_alone(float64_default):
    torch.manual_seed(0)
    predictor = Predictor(tiny_config(), support_grid_size=3)
    video = torch.rand(2, 5, 3, 70, 100, generator=torch.Generator().manual_seed(3)) * 255
    queries = torch.tensor([[[0, 10.0, 20.0], [2, 50.0, 30.0], [0, 99.0, 69.0]],
                            [[1, 40.0, 10.0], [0, 5.0, 60.0], [3, 70.0, 35.0]]])
    trajectory, visibility = predictor(video, queries)
    assert trajectory.shape == (2, 5, 3, 2) and visibility.shape == (2, 5, 3)
    for b in range(2):
        alone, alone_visible = predictor(video[b:b + 1], queries[b:b + 1])
        assert (trajectory[b:b + 1] - alone).abs().max() < 1e-9
        assert torch.equal(visibility[b:b + 1], alone_visible)
