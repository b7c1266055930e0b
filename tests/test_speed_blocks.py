"""Each optimised block against its straightforward formulation, on random inputs (float64, tight tolerance)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from model.blocks import MHABlock, fused_attention, single_query_attention
from model.msda import (PAD, MultiScaleDeformableAttention, deformable_sampling, deformable_sampling_per_level,
                        level_constants, padded_value_table)
from model.onednn import linear, onednn_applies, onednn_weight, relu_feed_forward, rows_product
from model.trackon import StepPlan, TrackOn2, slide_in
from tests.tiny_model import tiny_config, tiny_model_config

TIGHT = 1e-12


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("low, high", [(-0.2, 1.2), (-3.0, 4.0)])
def test_weighted_gather_matches_grid_sample(low, high):
    shapes = [(12, 16), (6, 8), (3, 4), (2, 2)]
    tokens = sum(h * w for h, w in shapes)
    g = _generator()
    value = torch.randn(2, tokens, 4, 8, generator=g, dtype=torch.float64)
    # Locations spill past [0, 1]: partly outside corners read the zero padding, points far outside (second case)
    # are moved onto it.
    locations = torch.rand(2, 30, 4, 4, 4, 2, generator=g, dtype=torch.float64) * (high - low) + low
    weights = torch.rand(2, 30, 4, 4, 4, generator=g, dtype=torch.float64)
    fast = deformable_sampling(value, shapes, locations, weights)
    reference = deformable_sampling_per_level(value, shapes, locations, weights)
    assert fast.shape == (2, 30, 32)
    assert (fast - reference).abs().max() < TIGHT


def test_padded_value_table_is_each_level_zero_padded_in_token_order():
    shapes = [(5, 7), (3, 4)]
    value = torch.randn(2, 47, 3, 4, generator=_generator(5), dtype=torch.float64)
    table_elements = 2 * sum((h + 2 * PAD) * (w + 2 * PAD) for h, w in shapes) * 3 * 4
    del_me = torch.full((table_elements,), float("nan"), dtype=torch.float64)  # leave garbage where the table goes
    del del_me
    table = padded_value_table(value, shapes)
    expected = torch.cat([F.pad(level.view(2, h, w, 3, 4), (0, 0, 0, 0, PAD, PAD, PAD, PAD)).flatten(1, 2)
                          for level, (h, w) in zip(value.split([35, 12], dim=1), shapes)], dim=1)
    assert torch.equal(table, expected.reshape(-1, 4))


def test_module_sampling_at_pixels_matches_mmcv_locations():
    """The CPU path samples at reference * size - 0.5 + offset (no division); mmcv's locations are
    reference + offset / size in [0, 1]."""
    shapes = [(12, 16), (6, 8), (3, 4)]
    g = _generator(3)
    value = torch.randn(2, sum(h * w for h, w in shapes), 4, 8, generator=g, dtype=torch.float64)
    reference = torch.rand(2, 25, 3, 2, generator=g, dtype=torch.float64)
    offsets = torch.randn(2, 25, 4, 3, 4, 2, generator=g, dtype=torch.float64) * 5
    weights = torch.rand(2, 25, 4, 3, 4, generator=g, dtype=torch.float64)
    size_xy = level_constants(tuple(shapes), torch.device("cpu"), torch.float64).size_xy
    assert size_xy.tolist() == [[16, 12], [8, 6], [4, 3]]
    locations = reference[:, :, None, :, None, :] + offsets / size_xy[:, None, :]
    expected = deformable_sampling_per_level(value, shapes, locations, weights)
    sampled = MultiScaleDeformableAttention._sample(value, shapes, reference, offsets, weights)
    assert (sampled - expected).abs().max() < TIGHT


def test_weighted_gather_accepts_zero_queries():
    value = torch.randn(1, 35 + 12, 2, 3, dtype=torch.float64)
    empty = deformable_sampling(value, [(5, 7), (3, 4)], torch.rand(1, 0, 2, 2, 3, 2, dtype=torch.float64),
                                torch.rand(1, 0, 2, 2, 3, dtype=torch.float64))
    assert empty.shape == (1, 0, 6)


def test_weighted_gather_gradients_match_grid_sample():
    shapes = [(5, 7), (3, 4)]
    g = _generator(1)
    value = torch.randn(1, 47, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    locations = torch.rand(1, 6, 2, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 6, 2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    grads = []
    for sample in (deformable_sampling, deformable_sampling_per_level):
        sample(value, shapes, locations, weights).square().sum().backward()
        grads.append([t.grad.clone() for t in (value, locations, weights)])
        for t in (value, locations, weights):
            t.grad = None
    for fast, reference in zip(*grads):
        assert (fast - reference).abs().max() < 1e-10


@pytest.mark.parametrize("layout", ["qkv_same", "kv_same", "qk_same", "all_different", "query_rows"])
def test_fused_attention_matches_multihead_attention(layout):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).double().eval()
    g = _generator(2)
    x = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    other = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    q, k, v = {"qkv_same": (x, x, x), "kv_same": (other, x, x), "qk_same": (x, x, other),
               "all_different": (other[:, :5], x, other), "query_rows": (x[:, -1:], x, other)}[layout]
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, :4] = True
    with torch.no_grad():
        expected = mha(q, k, v, key_padding_mask=mask, need_weights=False)[0]
        assert (fused_attention(mha, q, k, v, mask) - expected).abs().max() < TIGHT
        if q.shape[1] == 1:  # one query row: keys and values are never projected
            assert (single_query_attention(mha, q, k, v, mask) - expected).abs().max() < TIGHT
            unmasked = mha(q, k, v, need_weights=False)[0]
            assert (single_query_attention(mha, q, k, v, None) - unmasked).abs().max() < TIGHT


def test_block_on_query_rows_equals_the_full_blocks_rows():
    torch.manual_seed(0)
    block = MHABlock(16, 4).double().eval()
    sequence = torch.randn(5, 9, 16, dtype=torch.float64)
    mask = torch.zeros(5, 9, dtype=torch.bool)
    mask[:, :3] = True
    with torch.no_grad():
        full = block(sequence, sequence, sequence, mask)
        last = block(sequence[:, -1:], sequence, sequence, mask)
    assert (full[:, -1:] - last).abs().max() < TIGHT


def _straightforward_correlation(model: TrackOn2, q: torch.Tensor, pyramid) -> torch.Tensor:
    """Per-level cosine correlation, bilinear upsampling to stride 4 and the 4->1 conv, as the reference."""
    batch, num, _ = q.shape
    q_normalised = F.normalize(q, dim=-1)
    maps = []
    for tokens, shape in zip(pyramid, model.level_shapes()):
        corr = torch.einsum("bnd,bpd->bnp", q_normalised, F.normalize(tokens, dim=-1)).reshape(batch * num, 1, *shape)
        if shape != (model.Hf, model.Wf):
            corr = F.interpolate(corr, size=(model.Hf, model.Wf), mode="bilinear", align_corners=False)
        maps.append(corr)
    return model.ms_corr_proj(torch.cat(maps, dim=1)).view(batch, num, model.P)


def test_correlation_basis_matches_upsample_then_conv():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).double().eval()
    nn.init.normal_(model.ms_corr_proj.bias)
    pyramid = [torch.randn(2, h * w, model.D, dtype=torch.float64) for h, w in model.level_shapes()]
    q = torch.randn(2, 5, model.D, dtype=torch.float64)
    with torch.no_grad():
        fast = model.multiscale_correlation(q, model.correlation_basis(pyramid))
        reference = _straightforward_correlation(model, q, pyramid)
    assert (fast - reference).abs().max() < TIGHT


def test_onednn_calls_in_chunks_of_rows_match_one_pass(monkeypatch):
    torch.manual_seed(0)
    first, second = nn.Linear(32, 64), nn.Linear(64, 32)
    x = torch.randn(3, 50, 32)
    with torch.no_grad():
        whole = relu_feed_forward(x, first, second)
        whole_linear = linear(x, first.weight, first.bias)
        rows, bias = torch.randn(64, 32), torch.randn(64)
        whole_product = rows_product(x[0], rows, bias)
        monkeypatch.setattr("model.onednn.CHUNK_BYTES", 64 * 4 * 7)  # chunks of 7 rows
        chunked = relu_feed_forward(x, first, second)
        chunked_linear = linear(x, first.weight, first.bias)
        chunked_product = rows_product(x[0], rows, bias)
    assert chunked.shape == (3, 50, 32) and chunked_linear.shape == (3, 50, 64) and chunked_product.shape == (50, 64)
    assert (chunked - whole).abs().max() < 1e-5 and (chunked_linear - whole_linear).abs().max() < 1e-5
    assert (chunked_product - whole_product).abs().max() < 1e-5
    assert (whole_product - torch.addmm(bias, x[0], rows.T)).abs().max() < 1e-5
    assert (whole - second(F.relu(first(x)))).abs().max() < 1e-5


def test_onednn_linear_and_feed_forward_match_the_default_path():
    torch.manual_seed(0)
    first, second = nn.Linear(32, 64), nn.Linear(64, 32)
    x = torch.randn(3, 50, 32)
    with torch.no_grad():
        assert onednn_applies(x) == torch.backends.mkldnn.is_available()
        assert (linear(x, first.weight, first.bias) - first(x)).abs().max() < 1e-5
        assert (relu_feed_forward(x, first, second) - second(F.relu(first(x)))).abs().max() < 1e-5
    doubled = x.double()
    assert not onednn_applies(doubled) and not onednn_applies(x)  # float64, and gradients recorded
    first.double()
    with torch.no_grad():
        assert torch.equal(linear(doubled, first.weight, first.bias), first(doubled))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_converted_weights_are_reused_until_the_parameter_changes():
    from model import onednn

    torch.manual_seed(0)
    layer = nn.Linear(16, 24).requires_grad_(False)
    x = torch.randn(5, 16)
    with torch.no_grad():
        top = layer.weight[:8]
        assert onednn_weight(top) is onednn_weight(layer.weight[:8])  # a slice's copy is kept with its parameter
        assert onednn_weight(top) is not onednn_weight(layer.weight[8:])
        before = linear(x, layer.weight, layer.bias)
        layer.weight.mul_(2)  # load_state_dict and copy_ write in place: the version counter moves
        after = linear(x, layer.weight, layer.bias)
        assert (after - layer(x)).abs().max() < 1e-5 and (after - before).abs().max() > 1e-2
        for _ in range(3):  # new storage each time (as .data swaps and dtype round trips do)
            layer.weight.data = torch.randn(24, 16)
            assert (linear(x, layer.weight, layer.bias) - layer(x)).abs().max() < 1e-5
        assert len(onednn._WEIGHT_COPIES[id(layer.weight)][2]) == 1  # copies of the old storages are dropped
        layer.half().float()  # a dtype round trip gives new storage, possibly at a freed buffer's address
        assert (linear(x, layer.weight, layer.bias) - layer(x)).abs().max() < 1e-5
        alive = weakref.ref(layer.weight)
        del layer, top
        gc.collect()
        assert alive() is None  # the cache does not keep a parameter alive
        trainable = nn.Linear(16, 24)
        assert onednn_weight(trainable.weight) is not onednn_weight(trainable.weight)  # never cached
    with torch.inference_mode():
        made_in_inference = torch.randn(24, 16)
        assert (linear(x, made_in_inference) - F.linear(x, made_in_inference)).abs().max() < 1e-5


def _tracked_model() -> TrackOn2:
    torch.manual_seed(0)
    return TrackOn2(tiny_model_config(M=6)).double().eval()


def test_skipping_empty_memory_slots_is_exact():
    model = _tracked_model()
    g = _generator(3)
    frames = torch.rand(4, 3, *model.input_size, generator=g, dtype=torch.float64)
    coords = torch.rand(1, 5, 2, generator=g, dtype=torch.float64)
    times = torch.tensor([[0, 0, 1, 1, 2]])
    outputs = {}
    with torch.no_grad():
        for skip in (True, False):
            state, points = None, []
            for t in range(frames.shape[0]):
                frame = model.encode(frames[t:t + 1])
                state = state or model.init_state(1, 5, frame.fused)
                plan = StepPlan.from_times(times, t, model.M, frames.device)
                assert plan.empty_slots == max(model.M - t, 0)
                if not skip:
                    plan = StepPlan(plan.start, plan.decode, plan.all_active, 0)
                points.append(model.step(state, frame, coords, times == t, times <= t, plan)[0])
            outputs[skip] = torch.stack(points)
    assert (outputs[True] - outputs[False]).abs().max() < 1e-10


def test_plan_from_host_times_matches_plan_from_masks():
    times = torch.tensor([[0, 2, 1, 2], [1, 2, 0, 3]])
    for t in range(5):
        host = StepPlan.from_times(times, t, 4, torch.device("cpu"))
        read_back = StepPlan.from_masks(times == t, times <= t)
        assert host.all_active == read_back.all_active
        for mine, theirs in ((host.start, read_back.start), (host.decode, read_back.decode)):
            assert (mine is None) == (theirs is None)
            if isinstance(mine, torch.Tensor):
                assert torch.equal(mine, theirs)
            elif mine is not None:
                assert mine == theirs == slice(None)


def test_empty_memory_slots_are_skipped_on_the_cpu_only():
    times = torch.zeros(1, 3, dtype=torch.long)  # every query starts at frame 0: all active, none starting at 2
    assert StepPlan.from_times(times, 2, 6, torch.device("cpu")).empty_slots == 4
    assert StepPlan.from_times(times, 9, 6, torch.device("cpu")).empty_slots == 0
    assert StepPlan.from_times(times, 2, 6, torch.device("cuda")).empty_slots == 0  # fixed shapes on a GPU


@pytest.mark.parametrize("query_only", [False, True])
def test_chunked_memory_attention_matches_whole_sequences(monkeypatch, query_only):
    """Two memory layers chunked over sequences (the second reusing the first's chunk outputs, query row replaced),
    as the straightforward block calls on the concatenated sequences (memory rows, then the query; keys and
    queries carry the time embedding)."""
    model = _tracked_model()
    g = _generator(4)
    count, slots, dim = 11, model.M, model.D
    memory = torch.randn(count, slots, dim, generator=g, dtype=torch.float64)
    q = torch.randn(count, dim, generator=g, dtype=torch.float64)
    next_q = torch.randn(count, dim, generator=g, dtype=torch.float64)
    key_mask = torch.rand(count, slots + 1, generator=g) < 0.3
    key_mask[:, -1] = False
    with torch.no_grad():
        sequence = torch.cat([memory, q[:, None]], dim=1)
        keyed = sequence + model.t_embedding
        first = model.memory_attention[0](keyed, keyed, sequence, key_mask)
        sequence = torch.cat([first[:, :-1], next_q[:, None]], dim=1)
        keyed = sequence + model.t_embedding
        expected = model.memory_attention[1](keyed, keyed, sequence, key_mask)
        monkeypatch.setattr("model.trackon.MEMORY_CHUNK_ROWS", 3 * (slots + 1))  # chunks of 3 sequences
        chunks = model._memory_chunks(memory)
        assert [len(chunk) for chunk in chunks] == [3, 3, 3, 2]
        outputs, first_q = model._memory_layer(0, chunks, q, model.t_embedding, key_mask, False)
        outputs, new_q = model._memory_layer(1, outputs, next_q, model.t_embedding, key_mask, query_only)
    assert (first_q - first[:, -1]).abs().max() < TIGHT
    assert (new_q - expected[:, -1]).abs().max() < TIGHT
    new_memory = torch.cat([out[:, :-1] for out in outputs])
    assert new_memory.shape == ((count, 0, dim) if query_only else (count, slots, dim))
    if not query_only:
        assert (new_memory - expected[:, :-1]).abs().max() < TIGHT


def test_single_query_block_zeroes_a_query_whose_keys_are_all_masked():
    torch.manual_seed(0)
    block = MHABlock(16, 4).double().eval()
    q, kv = torch.randn(3, 1, 16, dtype=torch.float64), torch.randn(3, 8, 16, dtype=torch.float64)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[1] = True
    with torch.no_grad():
        out = block(q, kv, kv, mask)
        no_attention = block._finish(q[1:2], torch.zeros_like(q[1:2]))
    assert torch.isfinite(out).all()
    assert (out[1:2] - no_attention).abs().max() < TIGHT
    kv.requires_grad_(True)
    block(q, kv, kv, mask).sum().backward()  # at eval with gradients on: no NaN from the fully masked row
    assert torch.isfinite(kv.grad).all() and all(torch.isfinite(p.grad).all() for p in block.parameters())


def test_position_tokens_are_kept_for_a_frozen_map_and_follow_its_changes():
    torch.manual_seed(0)
    backbone = TrackOn2(tiny_model_config()).double().backbone
    pos = backbone.pos_embedding

    def direct() -> list[torch.Tensor]:
        maps = [pos] + [F.interpolate(pos, scale_factor=0.5**level, mode="bilinear", align_corners=False)
                        for level in range(1, 4)]
        return [level_map.flatten(2).transpose(1, 2) for level_map in maps]

    trainable = backbone.position_tokens()
    assert all(torch.equal(got, want) for got, want in zip(trainable, direct()))
    trainable[1].sum().backward()  # a trainable map is not kept, and gradients reach it
    assert pos.grad is not None and pos.grad.abs().sum() > 0 and backbone._position_cache is None
    backbone.requires_grad_(False)
    with torch.inference_mode():
        first = backbone.position_tokens()
    assert backbone.position_tokens() is first and not first[0].is_inference()
    with torch.no_grad():
        pos.add_(1.0)  # an in-place change (as load_state_dict's copy_) bumps the version
    changed = backbone.position_tokens()
    assert changed is not first
    assert all(torch.equal(got, want) for got, want in zip(changed, direct()))


def test_memory_window_slides_like_concatenation_and_copies_only_when_its_buffer_is_used_up():
    g = _generator(6)
    slots = 8  # a buffer of 8 + 2 slots: a new one every 2 calls
    window = torch.randn(2, 4, slots, 5, generator=g, dtype=torch.float64)
    expected = window.clone()
    new_buffer = []
    with torch.inference_mode():
        for _ in range(7):
            newest = torch.randn(2, 4, 1, 5, generator=g, dtype=torch.float64)
            storage = window.untyped_storage().data_ptr()
            window = slide_in(window, newest)
            expected = torch.cat([expected[:, :, 1:], newest], dim=2)
            assert torch.equal(window, expected)
            new_buffer.append(window.untyped_storage().data_ptr() != storage)
        assert new_buffer == [True, False, True, False, True, False, True]
        selected = window[:, [2, 0]]  # a state's select: a copy, which gets a new buffer
        newest = torch.randn(2, 2, 1, 5, generator=g, dtype=torch.float64)
        assert torch.equal(slide_in(selected, newest), torch.cat([expected[:, [2, 0], 1:], newest], dim=2))
        assert torch.equal(window, expected)  # the window it was selected from is untouched
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    with torch.no_grad():
        mask = slide_in(slide_in(mask, torch.ones(1, 2, 1, dtype=torch.bool)), torch.zeros(1, 2, 1, dtype=torch.bool))
    assert mask.tolist() == [[[False, True, False], [False, True, False]]]
    tracked = torch.randn(1, 2, slots, 5, dtype=torch.float64, requires_grad=True)
    slide_in(tracked, torch.ones(1, 2, 1, 5, dtype=torch.float64)).sum().backward()  # with gradients: concatenation
    assert tracked.grad[:, :, 1:].eq(1).all() and tracked.grad[:, :, 0].eq(0).all()


def test_memory_window_made_in_inference_mode_slides_on_outside_it():
    window = torch.zeros(1, 2, 3, 4)
    with torch.inference_mode():
        window = slide_in(window, torch.ones(1, 2, 1, 4))
    with torch.no_grad():
        window = slide_in(window, torch.full((1, 2, 1, 4), 2.0))
    assert window[0, 0, :, 0].tolist() == [0.0, 1.0, 2.0]


def test_correlation_through_onednn_matches_the_batched_matmul():
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).eval().requires_grad_(False)
    nn.init.normal_(model.ms_corr_proj.bias)
    pyramid = [torch.randn(1, h * w, model.D) for h, w in model.level_shapes()]
    q = torch.randn(1, 5, model.D)
    with torch.inference_mode():
        basis = model.correlation_basis(pyramid)
        assert onednn_applies(basis) == torch.backends.mkldnn.is_available()
        fast = model.multiscale_correlation(q, basis)
        reference = torch.baddbmm(model.ms_corr_proj.bias, F.normalize(q, dim=-1), basis.transpose(1, 2))
    assert fast.shape == (1, 5, model.P)
    assert (fast - reference).abs().max() < 1e-5


def test_memory_window_writes_only_its_own_buffer():
    with torch.inference_mode():
        bank = torch.arange(2 * 4 * 2.0).view(1, 2, 4, 2)
        before = bank.clone()
        slide_in(bank[:, :, :2], torch.full((1, 2, 1, 2), -1.0))  # a view shaped like a buffer, not one
        assert torch.equal(bank, before)
        first = slide_in(torch.zeros(1, 1, 3, 1), torch.full((1, 1, 1, 1), 1.0))
        second = slide_in(first, torch.full((1, 1, 1, 1), 2.0))
        fork = slide_in(first, torch.full((1, 1, 1, 1), 3.0))  # a window slides once; again, it is copied
        assert second.flatten().tolist() == [0.0, 1.0, 2.0] and fork.flatten().tolist() == [0.0, 1.0, 3.0]


def test_a_model_built_in_inference_mode_tracks():
    """Its parameters are inference tensors, without the version counter the kept position tokens check."""
    torch.manual_seed(0)
    with torch.inference_mode():
        model = TrackOn2(tiny_model_config()).eval()
        assert model.backbone.pos_embedding.is_inference()
        first = model.backbone.position_tokens()
        assert model.backbone._position_cache is None  # computed on every call
        video = torch.rand(1, 3, 3, *model.input_size) * 255
        trajectory = model.forward_online(video, torch.tensor([[[0.0, 5.0, 5.0]]]))["P"]
    assert len(first) == 4 and torch.isfinite(trajectory).all()
