"""Unit tests of the model's parts: deformable attention, memory extension, batching, gradients, precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.tiny_model import TINY_DINOV3, tiny_config, tiny_model_config
from trackon2.model.loss import LossFunction
from trackon2.model.msda import MultiScaleDeformableAttention
from trackon2.model.trackon import TrackOn2


def test_msda_samples_at_reference_point_and_adds_residual():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(8, num_heads=1, num_levels=1, num_points=1, dropout=0.0).double().eval()
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
    value = torch.randn(1, 4 * 6, 8, dtype=torch.float64)
    query = torch.randn(1, 3, 8, dtype=torch.float64)
    refs = torch.tensor([[[[0.25, 0.5]], [[0.1, 0.9]], [[0.7, 0.3]]]], dtype=torch.float64)
    out = attn(query, value, refs, [(4, 6)])
    value_map = attn.value_proj(value).transpose(1, 2).reshape(1, 8, 4, 6)
    sampled = F.grid_sample(value_map, (2 * refs - 1).view(1, 3, 1, 2), align_corners=False).view(8, 3).T
    expected = attn.output_proj(sampled.unsqueeze(0)) + query
    assert torch.allclose(out, expected, atol=1e-12)


def test_msda_initial_offsets_fan_out_per_head():
    attn = MultiScaleDeformableAttention(16, num_heads=4, num_levels=2, num_points=3)
    offsets = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    assert torch.equal(offsets[0, 0, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(offsets[1, 1, 2], torch.tensor([0.0, 3.0]), atol=1e-6)
    assert torch.equal(attn.attention_weights.weight, torch.zeros_like(attn.attention_weights.weight))


def test_msda_rejects_wrong_value_length():
    attn = MultiScaleDeformableAttention(8, num_heads=2, num_levels=1)
    with pytest.raises(ValueError, match="spatial_shapes"):
        attn(torch.zeros(1, 2, 8), torch.zeros(1, 10, 8), torch.zeros(1, 2, 1, 2), [(4, 6)])


def test_memory_extension_keeps_endpoints_and_current_row():
    model = TrackOn2(tiny_model_config())
    before = model.t_embedding.detach().clone()
    after = model.time_embedding(10).detach()
    assert after.shape == (1, 11, 64) and model.t_embedding.shape == (1, 5, 64)
    assert torch.allclose(after[:, 0], before[:, 0]) and torch.allclose(after[:, 9], before[:, 3])
    assert torch.equal(after[:, -1], before[:, -1])
    # Output row 4 of 10 sits at 4 * 3 / 9 = 4/3 on the 4-row input grid (align_corners=True).
    assert torch.allclose(after[:, 4], torch.lerp(before[:, 1], before[:, 2], 1 / 3), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return TrackOn2(tiny_model_config()).double().eval()


def _clip(seed: int, frames: int = 6):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, frames, 3, 70, 100, generator=generator, dtype=torch.float64) * 255


def test_batched_forward_equals_per_sample(tiny_model):
    videos = torch.cat([_clip(1), _clip(2)])
    queries = torch.tensor([[[0, 10.0, 20.0], [3, 50.0, 30.0], [1, 90, 60]],
                            [[2, 30.0, 40.0], [0, 5.0, 5.0], [5, 99, 69]]], dtype=torch.float64)
    with torch.no_grad():
        batched = tiny_model(videos, queries, p_mask=0.0)
        for b in range(2):
            single = tiny_model(videos[b:b + 1], queries[b:b + 1], p_mask=0.0)
            for key, value in single.items():
                assert torch.allclose(batched[key][b:b + 1], value, atol=1e-9), key


def test_outputs_are_zero_before_a_query_starts(tiny_model):
    queries = torch.tensor([[[3, 50.0, 30.0], [0, 10.0, 10.0]]], dtype=torch.float64)
    out = tiny_model.forward_online(_clip(3), queries)
    assert torch.count_nonzero(out["P"][0, :3, 0]) == 0 and torch.count_nonzero(out["V_logit"][0, :3, 0]) == 0
    assert torch.count_nonzero(out["P"][0, 3:, 0]) > 0 and torch.count_nonzero(out["P"][0, :, 1]) > 0


def test_training_step_reaches_adapter_but_not_the_frozen_vit():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).train()
    video = torch.rand(1, 4, 3, 64, 96) * 255
    queries = torch.tensor([[[0, 10.0, 20.0], [1, 40.0, 30.0]]])
    out = model(video, queries)
    tracks = torch.rand(1, 4, 2, 2) * torch.tensor([96.0, 64.0])
    losses = LossFunction.from_config(tiny_config())(out, tracks, torch.ones(1, 4, 2, dtype=torch.bool), queries[..., 0].long())
    sum(losses.values()).backward()
    vit = model.backbone.vit_encoder.dinov2
    assert all(p.grad is None and not p.requires_grad for p in vit.parameters())
    assert model.backbone.vit_encoder.spm.fc1.weight.grad.abs().sum() > 0
    assert model.t_embedding.grad.abs().sum() > 0 and model.prediction_head.vis_layer[0].weight.grad is not None
    assert not vit.training


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = TrackOn2(tiny_model_config(grad_checkpoint=checkpointed)).double().train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        video = torch.rand(1, 3, 3, 64, 96, dtype=torch.float64) * 255
        out = model(video, torch.tensor([[[0, 10.0, 20.0]]], dtype=torch.float64), p_mask=0.0)
        out["P"].sum().backward()
        grads.append(model.backbone.vit_encoder.interactions[1].injector.gamma.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-10)


def test_dinov3_backbone_with_upsampling_runs_and_is_consistent():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config(vit_backbone="dinov3_s_plus", vit_upsample_factor=1.143,
                                  backbone_config=TINY_DINOV3)).double().eval()
    assert model.backbone.vit_encoder.vit_input_size(64, 96) == (64, 96)
    assert model.backbone.vit_encoder.vit_input_size(384, 512) == (432, 576)
    queries = torch.tensor([[[0, 10.0, 20.0], [2, 50.0, 30.0]]], dtype=torch.float64)
    with torch.no_grad():
        offline = model(_clip(4, 4), queries, p_mask=0.0)
    online = model.forward_online(_clip(4, 4), queries)
    assert torch.allclose(offline["P"], online["P"], atol=1e-9)


def test_float32_and_bfloat16_autocast_run_on_cpu():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).eval()
    video = torch.rand(1, 3, 3, 64, 96) * 255
    queries = torch.tensor([[[0, 10.0, 20.0]]])
    reference = model.forward_online(video, queries)["P"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.forward_online(video, queries)["P"]
    assert reference.dtype == mixed.dtype == torch.float32
    assert not torch.equal(reference, mixed)  # bfloat16 really was used
    # bfloat16 keeps ~3 significant digits: the tracks agree to a few pixels on this 96x64 input (the random
    # model's predictions spread over the whole frame, so a broken cast would be tens of pixels off).
    assert (reference - mixed).abs().max() < 8.0
