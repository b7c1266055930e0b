"""The model must reproduce the reference implementation's own outputs (float64, tiny random weights)."""

from __future__ import annotations

import ast

import pytest
import torch

from tests.conftest import FIXTURES
from trackon2.model.checkpoint import load_state_dict_strict
from trackon2.model.config import ModelConfig
from trackon2.model.loss import LossFunction
from trackon2.model.trackon import TrackOn2
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.yaml_schema import config_from_mapping

TOL = 1e-6


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    error = (actual.double() - expected.double()).abs().max().item()
    assert error < TOL, f"{name}: max abs error {error:.3e}"


def test_training_forward_matches_reference(golden, golden_model):
    with torch.no_grad():
        out = golden_model(golden["video"].clone(), golden["queries"].clone(), p_mask=0.0)
    assert set(out) == set(golden["forward"])
    for key, expected in golden["forward"].items():
        _assert_close(out[key], expected, key)


def test_online_forward_matches_reference(golden, golden_model):
    out = golden_model.forward_online(golden["video"].clone(), golden["queries"].clone())
    for key, expected in golden["forward_online"].items():
        _assert_close(out[key], expected, key)


@pytest.mark.slow
def test_inputs_are_not_modified(golden, golden_model):
    video, queries = golden["video"].clone(), golden["queries"].clone()
    golden_model.forward_online(video, queries)
    assert torch.equal(video, golden["video"]) and torch.equal(queries, golden["queries"])


def test_losses_match_reference(golden, golden_config):
    inputs = golden["loss_inputs"]
    losses = LossFunction.from_config(golden_config)(golden["forward"], inputs["gt_tracks"], inputs["gt_visibility"],
                                          inputs["query_times"])
    assert list(losses) == ["L_p", "L_p2", "L_vis", "L_o", "L_u", "L_topk_u", "L_topk_rank"]
    for name, value in losses.items():
        assert abs(value.item() - golden["losses"][name]) < TOL, name


def test_predictor_matches_reference(golden, golden_checkpoint, float64_default):
    settings = golden["predictor"]
    config = {**golden["config"], "backbone_config": golden["backbone_config"], "M_i": settings["M_i"],
              "delta_v": settings["delta_v"]}
    predictor = Predictor(config, checkpoint_path=golden_checkpoint, support_grid_size=settings["support_grid_size"],
                          pin_query_points=False)
    _assert_close(predictor.model.time_embedding(predictor.memory_size).detach(),
                  settings["t_embedding_after_extension"], "t_embedding")
    trajectory, visibility = predictor(golden["video"].clone(), golden["queries"].clone())
    _assert_close(trajectory, settings["trajectory"], "trajectory")
    assert torch.equal(visibility, settings["visibility"])


def _official_names(variant: str) -> dict[str, tuple[int, ...]]:
    rows = (FIXTURES / "official_state_dict_keys.tsv").read_text().splitlines()
    names = {}
    for row in rows:
        config, name, shape = row.split("\t")
        if config == variant:
            parsed = ast.literal_eval(shape)
            names[name] = tuple(parsed) if isinstance(parsed, tuple) else (parsed,)
    return names


FULL_SIZE_VITS = {
    "dinov2_s": {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                 "mlp_ratio": 4, "patch_size": 14, "image_size": 518},
    "dinov3_s_plus": {"model_type": "dinov3_vit", "hidden_size": 384, "num_hidden_layers": 12,
                      "num_attention_heads": 6, "intermediate_size": 1536, "patch_size": 16,
                      "num_register_tokens": 4, "use_gated_mlp": True},
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dinov2_s", "dinov3_s_plus"])
def test_state_dict_names_match_official_checkpoints(variant):
    factor = 1.143 if variant == "dinov3_s_plus" else 1.0
    config = config_from_mapping({"vit_backbone": variant, "vit_upsample_factor": factor, "M": 24, "D": 256,
                                  "K": 16, "backbone_config": FULL_SIZE_VITS[variant]})
    model = TrackOn2(ModelConfig.from_namespace(config))
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()
            if not name.startswith(f"backbone.vit_encoder.{variant.split('_')[0]}.")}
    official = _official_names(variant)
    assert set(ours) - set(official) == set(), "names the official checkpoint does not have"
    assert set(official) - set(ours) == set(), "official names this model lacks"
    wrong = {name: (ours[name], official[name]) for name in ours if ours[name] != official[name]}
    assert not wrong


def test_transformers4_and_5_vit_names_both_load(golden, golden_config):
    model = TrackOn2(ModelConfig.from_namespace(golden_config)).double().eval()
    renamed = {}
    for name, value in golden["state_dict"].items():
        renamed[name.replace(".attention.attention.query.", ".attention.q_proj.")
                    .replace(".attention.attention.key.", ".attention.k_proj.")
                    .replace(".attention.attention.value.", ".attention.v_proj.")
                    .replace(".attention.output.dense.", ".attention.o_proj.")] = value
    assert renamed.keys() != golden["state_dict"].keys()
    query_weight = golden["state_dict"]["backbone.vit_encoder.dinov2.encoder.layer.3.attention.attention.query.weight"]
    for state in (golden["state_dict"], renamed):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        load_state_dict_strict(model, state)
        attention = model.backbone.vit_encoder.dinov2.encoder.layer[3].attention
        loaded = attention.q_proj.weight if hasattr(attention, "q_proj") else attention.attention.query.weight
        assert torch.equal(loaded, query_weight.double())


def test_dinov3_layer_names_translate_between_transformers_versions():
    from trackon2.model.checkpoint import match_vit_names

    value = torch.zeros(1)
    v4 = "backbone.vit_encoder.dinov3.layer.0.attention.q_proj.weight"
    v5 = "backbone.vit_encoder.dinov3.model.layer.0.attention.q_proj.weight"
    assert list(match_vit_names({v4: value}, {v5})) == [v5]
    assert list(match_vit_names({v5: value}, {v4})) == [v4]
    assert list(match_vit_names({"fpn.foo": value}, {v5})) == ["fpn.foo"]
