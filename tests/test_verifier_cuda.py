"""The verifier on CUDA: the CPU's scores in float32, finite and close ones under fp16 / bf16 autocast (as the
reference evaluates it), and the ensemble's choice. These need a GPU; without one they are reported as skipped."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_verifier import tiny_verifier_config
from trackon2.model.verifier import Verifier
from trackon2.model.verifier.ensemble import VerifierEnsemble

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(frames: int = 7, points: int = 6, candidates: int = 3):
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, frames, 3, 72, 100, generator=g) * 255
    tracks = torch.rand(2, frames, points, candidates, 2, generator=g) * torch.tensor([100.0, 72.0])
    queries = torch.cat([torch.randint(0, frames, (2, points, 1), generator=g).float(),
                         torch.rand(2, points, 2, generator=g) * torch.tensor([100.0, 72.0])], dim=2)
    return video, tracks, queries


@pytest.mark.parametrize("amp", [None, torch.float16, torch.bfloat16])
def test_cuda_scores_match_the_cpu(amp):
    torch.manual_seed(0)
    verifier = Verifier(tiny_verifier_config()).eval()
    inputs = _inputs()
    with torch.no_grad():
        expected = verifier(*inputs, frames_per_pass=3)
        gpu = verifier.cuda()
        with torch.autocast("cuda", dtype=amp or torch.float16, enabled=amp is not None):
            scores = gpu(*(t.cuda() for t in inputs), frames_per_pass=3)
    assert scores.is_cuda and torch.isfinite(scores).all()
    tolerance = 1e-4 if amp is None else 0.1 * expected.abs().max().item()
    assert (scores.float().cpu() - expected).abs().max().item() < tolerance


def test_cuda_ensemble_select():
    torch.manual_seed(0)
    ensemble = VerifierEnsemble(Verifier(tiny_verifier_config()), device="cuda")
    video, tracks, queries = _inputs()
    candidates = tracks.permute(0, 3, 1, 2, 4).cuda()
    visibility = torch.rand(candidates.shape[:4], device="cuda") > 0.5
    selected, visible = ensemble.select(video.cuda(), queries.cuda(), candidates, visibility)
    assert selected.shape == (2, 7, 6, 2) and selected.is_cuda and visible.dtype == torch.bool
