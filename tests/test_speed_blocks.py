"""Each fast form (``runtime.fast``) against the plain formulation it replaces, on random inputs (float64, tight
tolerance), and the rule by which fast modules keep values derived from their frozen parameters."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.tiny_model import tiny_model_config
from trackon2.model.backbone import FeaturePyramid
from trackon2.model.blocks import DMSMHABlock, MHABlock
from trackon2.model.memory import QueryMemory
from trackon2.model.msda import MultiScaleDeformableAttention, deformable_sampling_per_level
from trackon2.model.trackon import FrameFeatures, TrackOn2
from trackon2.runtime.fast import forget_all_derived, set_fast
from trackon2.runtime.fast.deformable import PAD, deformable_sampling, level_constants, padded_value_table
from trackon2.runtime.fast.onednn import convert_weights, onednn_applies, project, relu_feed_forward, rows_product
from trackon2.runtime.fast.tracker import FastFrameFeatures
from trackon2.runtime.fast.window import WindowMemory

TIGHT = 1e-12
needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- deformable sampling
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
    """The fast module samples at reference * size - 0.5 + offset (no division); mmcv's locations (and the plain
    module's) are reference + offset / size in [0, 1]."""
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
    module = MultiScaleDeformableAttention(32, 4, 3).double()
    plain = module.sample(value, shapes, reference, offsets, weights)
    set_fast(module)
    assert type(module).__name__ == "FastDeformableAttention"
    sampled = module.sample(value, shapes, reference, offsets, weights)
    assert (plain - expected).abs().max() < TIGHT
    assert (sampled - expected).abs().max() < TIGHT


def test_fast_deformable_attention_module_matches_the_plain_one():
    torch.manual_seed(0)
    shapes = [(6, 8), (3, 4)]
    module = MultiScaleDeformableAttention(32, 4, 2).double().eval()
    nn.init.normal_(module.sampling_offsets.weight, std=0.3)
    nn.init.normal_(module.attention_weights.weight)
    g = _generator(8)
    query = torch.randn(2, 9, 32, generator=g, dtype=torch.float64)
    value = torch.randn(2, 60, 32, generator=g, dtype=torch.float64)
    reference = torch.rand(2, 9, 2, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        plain = module(query, value, reference, shapes)
        fast = set_fast(module)(query, value, reference, shapes)
    assert (fast - plain).abs().max() < TIGHT


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


# ------------------------------------------------------------------------------------------------- attention
def _fast_block(dim: int = 16, heads: int = 4) -> tuple[MHABlock, nn.MultiheadAttention]:
    """A float64 MHABlock at eval switched to its fast form, and its attention module."""
    torch.manual_seed(0)
    block = set_fast(MHABlock(dim, heads).double().eval())
    assert type(block).__name__ == "FastMHABlock"
    return block, block.mha


@pytest.mark.parametrize("layout", ["qkv_same", "kv_same", "qk_same", "all_different", "query_rows"])
def test_fused_attention_matches_multihead_attention(layout):
    block, mha = _fast_block()
    g = _generator(2)
    x = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    other = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    q, k, v = {"qkv_same": (x, x, x), "kv_same": (other, x, x), "qk_same": (x, x, other),
               "all_different": (other[:, :5], x, other), "query_rows": (x[:, -1:], x, other)}[layout]
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, :4] = True
    with torch.no_grad():
        expected = mha(q, k, v, key_padding_mask=mask, need_weights=False)[0]
        assert (block._fused_attention(q, k, v, mask) - expected).abs().max() < TIGHT
        assert (block.attend(q, k, v, mask) - expected).abs().max() < TIGHT
        if q.shape[1] == 1:  # one query row: keys and values are never projected
            assert (block._single_query_attention(q, k, v, mask) - expected).abs().max() < TIGHT
            unmasked = mha(q, k, v, need_weights=False)[0]
            assert (block._single_query_attention(q, k, v, None) - unmasked).abs().max() < TIGHT


@needs_onednn
def test_fast_block_through_onednn_matches_the_plain_block_in_float32():
    torch.manual_seed(0)
    plain = MHABlock(32, 4).eval().requires_grad_(False)
    fast = set_fast(copy.deepcopy(plain))
    g = _generator(9)
    x, other = torch.randn(2, 11, 32, generator=g), torch.randn(2, 11, 32, generator=g)
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[0, :5] = True
    with torch.no_grad():
        assert onednn_applies(x)
        for q, k, v in ((x, x, x), (other, x, x), (x[:, -1:], x, other)):
            assert (fast(q, k, v, mask) - plain(q, k, v, mask)).abs().max() < 1e-5


@pytest.mark.parametrize("fast", [False, True])
def test_block_on_query_rows_equals_the_full_blocks_rows(fast):
    torch.manual_seed(0)
    block = set_fast(MHABlock(16, 4).double().eval(), fast)
    sequence = torch.randn(5, 9, 16, dtype=torch.float64)
    mask = torch.zeros(5, 9, dtype=torch.bool)
    mask[:, :3] = True
    with torch.no_grad():
        full = block(sequence, sequence, sequence, mask)
        last = block(sequence[:, -1:], sequence, sequence, mask)
    assert (full[:, -1:] - last).abs().max() < TIGHT


def test_single_query_block_zeroes_a_query_whose_keys_are_all_masked():
    block, _ = _fast_block()
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


# ------------------------------------------------------------------------------------------------ correlation
def _features(model: TrackOn2, batch: int, dtype: torch.dtype, fast_features: bool) -> FrameFeatures:
    pyramid = FeaturePyramid(*(torch.randn(batch, h * w, model.D, dtype=dtype) for h, w in model.level_shapes()))
    fused = torch.randn(batch, model.P, model.D, dtype=dtype)
    return FastFrameFeatures(pyramid, fused) if fast_features else FrameFeatures(pyramid, fused)


@pytest.mark.parametrize("fast_features", [False, True])
def test_correlation_basis_matches_upsample_then_conv(fast_features):
    """The folded correlation (``FastTrackOn2.correlation``) against the plain per-level correlation, upsampling
    and 4->1 conv (``TrackOn2.correlation``); a fast frame keeps its basis for the step's second correlation."""
    torch.manual_seed(0)
    model = TrackOn2(tiny_model_config()).double().eval()
    nn.init.normal_(model.ms_corr_proj.bias)
    features = _features(model, 2, torch.float64, fast_features)
    q = torch.randn(2, 5, model.D, dtype=torch.float64)
    with torch.no_grad():
        reference = model.correlation(q, features)
        set_fast(model)
        fast = model.correlation(q, features)
        again = model.correlation(2 * q, features)
        basis = model.correlation_basis(features)
    assert (fast - reference).abs().max() < TIGHT
    assert (again - TrackOn2.correlation(model, 2 * q, features)).abs().max() < TIGHT
    assert (basis is model.correlation_basis(features)) == fast_features


@needs_onednn
def test_correlation_through_onednn_matches_the_batched_matmul():
    torch.manual_seed(0)
    model = set_fast(TrackOn2(tiny_model_config()).eval().requires_grad_(False))
    nn.init.normal_(model.ms_corr_proj.bias)
    features = _features(model, 1, torch.float32, True)
    q = torch.randn(1, 5, model.D)
    with torch.inference_mode():
        basis = model.correlation_basis(features)
        assert onednn_applies(basis)
        fast = model.correlation(q, features)
        reference = torch.baddbmm(model.ms_corr_proj.bias, F.normalize(q, dim=-1), basis.transpose(1, 2))
        plain = TrackOn2.correlation(model, q, features)
    assert fast.shape == (1, 5, model.P)
    assert (fast - reference).abs().max() < 1e-5 and (fast - plain).abs().max() < 1e-5


# ------------------------------------------------------------------------------------------------ oneDNN calls
@needs_onednn
def test_onednn_calls_in_chunks_of_rows_match_one_pass(monkeypatch):
    torch.manual_seed(0)
    first, second = nn.Linear(32, 64), nn.Linear(64, 32)
    x = torch.randn(3, 50, 32)
    with torch.no_grad():
        first_weights, second_weights = convert_weights(first.weight, first.bias), convert_weights(second.weight,
                                                                                                  second.bias)
        whole = relu_feed_forward(x, first_weights, second_weights)
        whole_linear = project(x, first_weights)
        rows, bias = torch.randn(64, 32), torch.randn(64)
        whole_product = rows_product(x[0], rows, bias)
        monkeypatch.setattr("runtime.fast.onednn.CHUNK_BYTES", 64 * 4 * 7)  # chunks of 7 rows
        chunked = relu_feed_forward(x, first_weights, second_weights)
        chunked_linear = project(x, first_weights)
        chunked_product = rows_product(x[0], rows, bias)
    assert chunked.shape == (3, 50, 32) and chunked_linear.shape == (3, 50, 64) and chunked_product.shape == (50, 64)
    assert (chunked - whole).abs().max() < 1e-5 and (chunked_linear - whole_linear).abs().max() < 1e-5
    assert (chunked_product - whole_product).abs().max() < 1e-5
    assert (whole_product - torch.addmm(bias, x[0], rows.T)).abs().max() < 1e-5
    assert (whole - second(F.relu(first(x)))).abs().max() < 1e-5


@needs_onednn
def test_fast_linear_matches_the_default_path_and_falls_back():
    torch.manual_seed(0)
    plain = nn.Linear(32, 64)
    layer = set_fast(copy.deepcopy(plain))
    assert type(layer).__name__ == "FastLinear" and layer.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(3, 50, 32)
    with torch.no_grad():
        assert onednn_applies(x)
        assert (layer(x) - plain(x)).abs().max() < 1e-5
    assert not onednn_applies(x)  # gradients recorded: the plain path, and gradients reach the weights
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    doubled = x.double()
    layer.double()
    with torch.no_grad():
        assert not onednn_applies(doubled)
        assert torch.equal(layer(doubled), F.linear(doubled, layer.weight, layer.bias))


# ------------------------------------------------------------------------------------ values kept while frozen
def _frozen_fast_linear() -> nn.Linear:
    torch.manual_seed(0)
    return set_fast(nn.Linear(16, 24)).requires_grad_(False)


def _matches_plain(layer: nn.Linear, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return bool((layer(x) - F.linear(x, layer.weight, layer.bias)).abs().max() < 1e-5)


@needs_onednn
def test_converted_weights_are_kept_while_frozen_and_dropped_when_the_parameters_change():
    layer = _frozen_fast_linear()
    x = torch.randn(5, 16)
    with torch.no_grad():
        kept = layer.onednn_weights()
        assert layer.onednn_weights() is kept  # reused
        assert _matches_plain(layer, x) and layer.onednn_weights() is kept

        doubled = {name: 2 * value for name, value in layer.state_dict().items()}
        layer.load_state_dict(doubled)
        assert layer.onednn_weights() is not kept and _matches_plain(layer, x)
        assert torch.equal(layer.weight, doubled["weight"])

        kept = layer.onednn_weights()
        layer.double().float()
        assert layer.onednn_weights() is not kept and _matches_plain(layer, x)

        kept = layer.onednn_weights()
        layer.weight = nn.Parameter(torch.randn(24, 16), requires_grad=False)
        assert layer.onednn_weights() is not kept and _matches_plain(layer, x)

        kept = layer.onednn_weights()
        layer.weight.data.mul_(3)  # not seen: an in-place write needs forget_all_derived
        assert layer.onednn_weights() is kept
        forget_all_derived(layer)
        assert layer.onednn_weights() is not kept and _matches_plain(layer, x)

        kept = layer.onednn_weights()
        layer.requires_grad_(True)
        assert layer.onednn_weights() is not kept  # a trainable layer never keeps
        assert layer.onednn_weights() is not layer.onednn_weights()
        assert _matches_plain(layer, x)
        layer.requires_grad_(False)
        assert layer.onednn_weights() is layer.onednn_weights()


@needs_onednn
def test_a_trainable_layer_updated_by_an_optimizer_is_used_with_its_new_weights():
    layer = _frozen_fast_linear()
    x = torch.randn(5, 16)
    with torch.no_grad():
        layer(x)  # keeps converted weights
    layer.requires_grad_(True)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).square().sum().backward()
    optimizer.step()
    layer.requires_grad_(False)
    assert _matches_plain(layer, x)


@needs_onednn
@pytest.mark.parametrize("block_class", ["MHABlock", "DMSMHABlock"])
@pytest.mark.parametrize("training", [True, False])
def test_a_fast_block_fine_tuned_and_frozen_again_uses_its_new_weights(block_class, training):
    """Kept feed-forward weights of a block are dropped when its linears are made trainable and trained (in train
    mode, or at eval without dropout): the next frozen call sees the new weights."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32)
    if block_class == "MHABlock":
        block = MHABlock(32, 4)
        inputs = (x, x, x)
    else:
        block = DMSMHABlock(32, 4, 1)
        inputs = (x, torch.randn(2, 12, 32), torch.rand(2, 3, 1, 2), [(3, 4)])
    set_fast(block.eval()).requires_grad_(False)
    with torch.no_grad():
        before = block.feed_forward(x)
        block(*inputs)  # keeps the converted linears
    block.train(training).requires_grad_(True)
    optimizer = torch.optim.SGD(block.parameters(), lr=10.0)
    block(*inputs).square().sum().backward()
    optimizer.step()
    block.eval().requires_grad_(False)
    with torch.no_grad():
        expected = block.linear2(F.relu(block.linear1(x)))
        assert (expected - before).abs().max() > 1e-2  # the step did change the feed-forward
        assert (block.feed_forward(x) - expected).abs().max() < 1e-5


@needs_onednn
@pytest.mark.parametrize("owner, name", [("linear1", "weight"), ("linear2", "bias"), ("mha", "in_proj_weight"),
                                         ("mha.out_proj", "weight")])
def test_a_fast_block_uses_a_reassigned_parameter(owner, name):
    """Assigning a parameter of one of the block's submodules drops what the block kept from it."""
    torch.manual_seed(0)
    plain = MHABlock(32, 4).eval().requires_grad_(False)
    fast = set_fast(copy.deepcopy(plain))
    x, other = torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    with torch.no_grad():
        for q, k in ((x, x), (x, other), (x[:, :1], other)):
            fast(q, k, k)  # keeps the converted projections
        new = torch.randn_like(plain.get_submodule(owner).get_parameter(name))
        for block in (plain, fast):
            setattr(block.get_submodule(owner), name, nn.Parameter(new.clone(), requires_grad=False))
        for q, k in ((x, x), (x, other), (x[:, :1], other)):
            assert (fast(q, k, k) - plain(q, k, k)).abs().max() < 1e-4


@needs_onednn
def test_copies_and_pickles_of_a_fast_layer_derive_their_own_values():
    layer = _frozen_fast_linear()
    x = torch.randn(5, 16)
    with torch.no_grad():
        kept = layer.onednn_weights()
        copied = copy.deepcopy(layer)
        unpickled = pickle.loads(pickle.dumps(layer))
        for other in (copied, unpickled):
            assert other.onednn_weights() is not kept
            assert torch.equal(other(x), layer(x))
        assert layer.onednn_weights() is kept


@needs_onednn
def test_a_deleted_fast_model_is_freed():
    torch.manual_seed(0)
    model = set_fast(TrackOn2(tiny_model_config())).eval().requires_grad_(False)
    with torch.inference_mode():
        model.forward_online(torch.rand(1, 2, 3, *model.input_size) * 255, torch.tensor([[[0.0, 5.0, 5.0]]]))
    assert model.projection1.onednn_weights() is model.projection1.onednn_weights()  # it does keep values
    alive, parameter = weakref.ref(model), weakref.ref(model.projection1.weight)
    del model
    gc.collect()
    assert alive() is None and parameter() is None


# --------------------------------------------------------------------------------------- memory attention
def _tracked_model() -> TrackOn2:
    torch.manual_seed(0)
    return TrackOn2(tiny_model_config(M=6)).double().eval()


@pytest.mark.parametrize("query_only", [False, True])
def test_chunked_memory_attention_matches_whole_sequences(monkeypatch, query_only):
    """Two memory layers chunked over sequences (the second reusing the first's chunk outputs, query row replaced),
    as the plain ``TrackOn2.attend_memory`` and the straightforward block calls on the concatenated sequences
    (memory rows, then the query; keys and queries carry the time embedding)."""
    model = _tracked_model()
    g = _generator(4)
    count, slots, dim = 11, model.M, model.D
    memory = torch.randn(count, slots, dim, generator=g, dtype=torch.float64)
    q = torch.randn(count, dim, generator=g, dtype=torch.float64)
    next_q = torch.randn(count, dim, generator=g, dtype=torch.float64)
    key_mask = torch.rand(count, slots + 1, generator=g) < 0.3
    key_mask[:, -1] = False
    t_embedding = model.time_embedding(slots)
    with torch.no_grad():
        sequence = torch.cat([memory, q[:, None]], dim=1)
        keyed = sequence + t_embedding
        first = model.memory_attention[0](keyed, keyed, sequence, key_mask)
        sequence = torch.cat([first[:, :-1], next_q[:, None]], dim=1)
        keyed = sequence + t_embedding
        expected = model.memory_attention[1](keyed, keyed, sequence, key_mask)
        plain_rows, plain_q = model.attend_memory(0, memory, q, t_embedding, key_mask, last=False)
        _, plain_next_q = model.attend_memory(1, plain_rows, next_q, t_embedding, key_mask, last=query_only)
        assert (plain_q - first[:, -1]).abs().max() < TIGHT
        assert (plain_next_q - expected[:, -1]).abs().max() < TIGHT

        set_fast(model)
        monkeypatch.setattr("runtime.fast.tracker.MEMORY_CHUNK_ROWS", 3 * (slots + 1))  # chunks of 3 sequences
        chunks = model._memory_chunks(memory)
        assert [len(chunk) for chunk in chunks] == [3, 3, 3, 2]
        outputs, first_q = model.attend_memory(0, memory, q, t_embedding, key_mask, last=False)
        assert [len(out) for out in outputs] == [3, 3, 3, 2]
        outputs, new_q = model.attend_memory(1, outputs, next_q, t_embedding, key_mask, last=query_only)
    assert (first_q - first[:, -1]).abs().max() < TIGHT
    assert (new_q - expected[:, -1]).abs().max() < TIGHT
    new_memory = torch.cat([out[:, :-1] for out in outputs])
    assert new_memory.shape == ((count, 0, dim) if query_only else (count, slots, dim))
    if not query_only:
        assert (new_memory - expected[:, :-1]).abs().max() < TIGHT


# ------------------------------------------------------------------------------------------- position tokens
def test_position_tokens_are_kept_for_a_frozen_map_and_follow_its_changes():
    torch.manual_seed(0)
    backbone = set_fast(TrackOn2(tiny_model_config()).double().backbone)
    assert type(backbone).__name__ == "FastBackbone"

    def direct() -> list[torch.Tensor]:
        pos = backbone.pos_embedding
        maps = [pos] + [F.interpolate(pos, scale_factor=0.5**level, mode="bilinear", align_corners=False)
                        for level in range(1, 4)]
        return [level_map.flatten(2).transpose(1, 2) for level_map in maps]

    def follows() -> bool:
        return all(torch.equal(got, want) for got, want in zip(backbone.position_tokens(), direct()))

    trainable = backbone.position_tokens()
    assert all(torch.equal(got, want) for got, want in zip(trainable, direct()))
    assert backbone.position_tokens() is not trainable  # a trainable map is not kept
    trainable[1].sum().backward()  # and gradients reach it
    assert backbone.pos_embedding.grad is not None and backbone.pos_embedding.grad.abs().sum() > 0
    backbone.requires_grad_(False)
    with torch.inference_mode():
        first = backbone.position_tokens()
    assert backbone.position_tokens() is first and not first[0].is_inference()

    with torch.no_grad():
        backbone.pos_embedding.add_(1.0)  # an in-place write is not seen ...
    assert backbone.position_tokens() is first
    forget_all_derived(backbone)  # ... until the kept values are forgotten
    changed = backbone.position_tokens()
    assert changed is not first and follows()

    state = {name: value + 1.0 for name, value in backbone.state_dict().items() if name == "pos_embedding"}
    backbone.load_state_dict(state, strict=False)
    assert backbone.position_tokens() is not changed and follows()
    kept = backbone.position_tokens()
    backbone.float().double()
    assert backbone.position_tokens() is not kept and follows()
    kept = backbone.position_tokens()
    backbone.pos_embedding = nn.Parameter(torch.randn_like(backbone.pos_embedding), requires_grad=False)
    assert backbone.position_tokens() is not kept and follows()
    backbone.requires_grad_(True)
    assert backbone.position_tokens() is not backbone.position_tokens() and follows()


def test_a_model_built_in_inference_mode_tracks():
    """Its parameters are inference tensors; the fast model tracks with them, as the plain model does."""
    torch.manual_seed(0)
    with torch.inference_mode():
        model = TrackOn2(tiny_model_config()).eval()
        assert model.backbone.pos_embedding.is_inference()
        video = torch.rand(1, 3, 3, *model.input_size) * 255
        queries = torch.tensor([[[0.0, 5.0, 5.0], [1.0, 40.0, 30.0]]])
        plain = model.forward_online(video, queries)["P"]
        set_fast(model)
        first = model.backbone.position_tokens()
        fast = model.forward_online(video, queries)["P"]
    assert len(first) == 4 and torch.isfinite(fast).all()
    assert (fast - plain).abs().max() < 1e-3


# ----------------------------------------------------------------------------------------------- memory window
def test_memory_window_slides_like_concatenation_and_copies_only_when_its_buffer_is_used_up():
    g = _generator(6)
    slots = 8  # a buffer of 8 + 2 slots: a new one every 2 writes
    features = torch.randn(2, 4, slots, 5, generator=g, dtype=torch.float64)
    empty = torch.rand(2, 4, slots, generator=g) < 0.5
    window, plain = WindowMemory(features, empty), QueryMemory(features.clone(), empty.clone())
    new_buffer = []
    with torch.inference_mode():
        for _ in range(7):
            newest = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
            written = torch.rand(2, 4, generator=g) < 0.7
            storage = window.features.untyped_storage().data_ptr()
            handed_out, handed_out_copy = window.features, window.features.clone()
            window.write(newest, written)
            plain.write(newest, written)
            assert torch.equal(window.features, plain.features) and torch.equal(window.empty, plain.empty)
            assert torch.equal(handed_out, handed_out_copy)  # views handed out earlier never change
            new_buffer.append(window.features.untyped_storage().data_ptr() != storage)
        assert new_buffer == [True, False, True, False, True, False, True]
        held = window.features
        expected = held.clone()
        window.replace(held[:, [2, 0]], window.empty[:, [2, 0]])  # a state's select
        plain.replace(plain.features[:, [2, 0]], plain.empty[:, [2, 0]])
        newest, written = torch.randn(2, 2, 5, generator=g, dtype=torch.float64), torch.ones(2, 2, dtype=torch.bool)
        window.write(newest, written)
        plain.write(newest, written)
        assert torch.equal(window.features, plain.features) and torch.equal(window.empty, plain.empty)
        assert torch.equal(held, expected)  # the window it was selected from is untouched
    tracked = torch.randn(1, 2, slots, 5, dtype=torch.float64, requires_grad=True)
    memory = WindowMemory(tracked, torch.zeros(1, 2, slots, dtype=torch.bool))
    memory.write(torch.ones(1, 2, 5, dtype=torch.float64), torch.ones(1, 2, dtype=torch.bool))
    memory.features.sum().backward()  # with gradients: concatenation
    assert tracked.grad[:, :, 1:].eq(1).all() and tracked.grad[:, :, 0].eq(0).all()


def test_memory_window_made_in_inference_mode_slides_on_outside_it():
    memory = WindowMemory(torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 3, dtype=torch.bool))
    written = torch.ones(1, 2, dtype=torch.bool)
    with torch.inference_mode():
        memory.write(torch.ones(1, 2, 4), written)
    with torch.no_grad():
        memory.write(torch.full((1, 2, 4), 2.0), written)
    assert memory.features[0, 0, :, 0].tolist() == [0.0, 1.0, 2.0]
    assert memory.empty[0, 0].tolist() == [True, False, False]


def test_memory_window_writes_only_its_own_buffer():
    with torch.inference_mode():
        bank = torch.arange(2 * 4 * 2.0).view(1, 2, 4, 2)
        before = bank.clone()
        memory = WindowMemory(bank[:, :, :2], torch.zeros(1, 2, 2, dtype=torch.bool))  # a view of another buffer
        for value in (-1.0, -2.0, -3.0):
            memory.write(torch.full((1, 2, 2), value), torch.ones(1, 2, dtype=torch.bool))
        assert torch.equal(bank, before)
        assert memory.features[0, 0, :, 0].tolist() == [-2.0, -3.0]
