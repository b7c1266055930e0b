"""The CUDA path: no host synchronisation inside a frame step (CUDA's own sync detector), bf16 autocast, and the
same tracks as on the CPU. These need a GPU; on a machine without one they are reported as skipped, and the
CPU-side proof of the no-sync property is ``tests/test_step_runtime.py``."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_model import tiny_config, tiny_model_config
from trackon2.model.trackon import TrackOn2
from trackon2.model.trackon_predictor import Predictor
from trackon2.runtime.fast import set_fast
from trackon2.runtime.online import OnlineTracker

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _video(frames: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(1, frames, 3, *size, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.mark.parametrize("amp", [False, True])
def test_a_frame_step_never_synchronises_with_the_host(amp):
    """CUDA's sync debug mode raises on any synchronising call (item, nonzero, blocking copies) inside the steps
    after the first, where every query is active."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = set_fast(TrackOn2(tiny_model_config())).to(device).eval()
    video = _video(5, model.input_size).to(device)
    tracker = OnlineTracker(model, batch=1, coords_like=video.new_zeros(1, 0, 2), memory_size=model.M)
    tracker.add_queries(torch.rand(1, 9, 2, device=device), 0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp)
    with torch.inference_mode(), autocast:
        tracker.step(video[:, 0])
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            steps = [tracker.step(video[:, t]) for t in range(1, 5)]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(step.points).all() for step in steps)


def test_cuda_float32_tracks_match_the_cpu():
    torch.manual_seed(0)
    predictor = Predictor(tiny_config(), support_grid_size=3).eval()
    video = _video(4, (70, 100), seed=1)
    queries = torch.tensor([[[0, 10.0, 20.0], [1, 50.0, 30.0], [0, 99.0, 69.0]]])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        on_cpu, visible_cpu = predictor(video, queries)
        on_gpu, visible_gpu = predictor.cuda()(video.cuda(), queries.cuda())
    assert (on_gpu.cpu() - on_cpu).abs().max() < 1e-2
    assert (visible_gpu.cpu() == visible_cpu).float().mean() > 0.9


def test_bf16_autocast_on_cuda_roughly_agrees_with_float32():
    torch.manual_seed(0)
    predictor = Predictor(tiny_config(), support_grid_size=3).cuda().eval()
    video = _video(4, (70, 100), seed=2).cuda()
    queries = torch.tensor([[[0, 10.0, 20.0], [0, 50.0, 30.0], [0, 80.0, 40.0]]]).cuda()
    with torch.inference_mode():
        reference, _ = predictor(video, queries)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            reduced, _ = predictor(video, queries)
    assert torch.isfinite(reduced).all()
    distance = (reduced.float() - reference).norm(dim=-1)
    assert distance.median() < 2.0, f"bf16 points are {distance.median():.2f} px from float32 (median)"
