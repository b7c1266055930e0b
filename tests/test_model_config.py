"""The typed model configuration: built from YAML / mappings / namespaces with the reference's key names,
validated with the config's messages, and enough on its own to build the model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import ROOT
from tests.tiny_model import tiny_config, tiny_model_config
from trackon2.model.config import ModelConfig
from trackon2.model.heads import PredictionHead, RerankModule
from trackon2.model.trackon import TrackOn2
from trackon2.model.yaml_schema import SCHEMA, ConfigError, load_config
from trackon2.training.config import DataConfig, RunConfig, TrainingConfig


def test_from_yaml_keeps_only_model_fields():
    config = ModelConfig.from_yaml(ROOT / "config" / "train.yaml")
    assert set(config.to_dict()) == {field.name for field in dataclasses.fields(ModelConfig)}
    full = load_config(ROOT / "config" / "train.yaml")
    assert all(getattr(config, name) == (tuple(value) if name == "input_size" else value)
               for name, value in vars(full).items() if name in config.to_dict())


def test_from_dict_fills_defaults_and_rejects_other_keys():
    config = ModelConfig.from_dict({"D": 128, "vit_backbone": "dinov3_s"})
    assert (config.D, config.vit_backbone, config.M, config.input_size) == (128, "dinov3_s", 24, (384, 512))
    with pytest.raises(ConfigError, match="'lr' are not model settings"):
        ModelConfig.from_dict({"D": 128, "lr": 1e-3})
    with pytest.raises(ConfigError,
                       match="unknown key\\(s\\) 'rerank_layers' \\(did you mean 'rerank_layer_num'\\?\\)"):
        ModelConfig.from_dict({"rerank_layers": 2})


def test_invalid_values_fail_when_built_or_replaced():
    config = ModelConfig.from_namespace(tiny_config())
    with pytest.raises(ConfigError, match="'D' \\(30\\) must be divisible by 4"):
        config.replace(D=30)
    with pytest.raises(ConfigError, match="'input_size' \\[64, 90\\] must be divisible by 32"):
        dataclasses.replace(config, input_size=(64, 90))
    with pytest.raises(ConfigError, match="ModelConfig has no field\\(s\\) 'lr'"):
        config.replace(lr=1.0)
    assert config.replace(M_i=9).M_i == 9 and config.M_i == 6


def test_model_from_typed_config_matches_model_from_namespace():
    torch.manual_seed(0)
    from_namespace = TrackOn2(ModelConfig.from_namespace(tiny_config()))
    torch.manual_seed(0)
    from_typed = TrackOn2(ModelConfig.from_namespace(tiny_config()))
    typed_state = from_typed.state_dict()
    assert list(typed_state) == list(from_namespace.state_dict())
    assert all(torch.equal(value, typed_state[name]) for name, value in from_namespace.state_dict().items())


def test_frozen_vit_train_mode_is_an_explicit_argument_and_the_model_takes_only_a_model_config():
    args = tiny_config()
    args.frozen_vit_train_mode = True
    assert not TrackOn2(ModelConfig.from_namespace(args)).backbone.vit_encoder.vit_train_mode
    assert TrackOn2(ModelConfig.from_namespace(args), vit_train_mode=True).backbone.vit_encoder.vit_train_mode
    with pytest.raises(TypeError, match="TrackOn2 takes a ModelConfig, got Namespace"):
        TrackOn2(args)


def test_heads_take_explicit_sizes():
    rerank = RerankModule(dim=32, top_k=5, num_layers=3, input_width=96)
    head = PredictionHead(dim=32, num_layers=2)
    assert (rerank.K, rerank.Wf, len(rerank.local_decoder)) == (5, 24, 3)
    assert len(head.offset_transformer) == 2 and head.vis_layer[0].in_features == 32


def test_run_config_parts_split_every_schema_key_once():
    parts = [ModelConfig, DataConfig, TrainingConfig]
    names = [field.name for part in parts for field in dataclasses.fields(part)]
    assert sorted(names) == sorted(SCHEMA) and len(names) == len(set(names))


def test_run_config_from_yaml_with_overrides():
    run = RunConfig.from_yaml(ROOT / "config" / "train.yaml", lr=1e-3, T=8)
    full = load_config(ROOT / "config" / "train.yaml", lr=1e-3, T=8)
    assert run.model == ModelConfig.from_namespace(full)
    assert (run.training.lr, run.training.epoch_num, run.data.T, run.data.N) == (1e-3, full.epoch_num, 8, full.N)
    with pytest.raises(ConfigError, match="'bs' must be at least 1"):
        RunConfig.from_namespace({**vars(full), "bs": 0})


def test_backbone_config_patch_size_must_fit_the_named_vit():
    with pytest.raises(ConfigError, match="backbone_config patch_size 16 does not fit vit_backbone 'dinov2_s' "
                                          "\\(its patches are 14 px\\)"):
        tiny_config(backbone_config={**tiny_config().backbone_config, "patch_size": 16})


def test_model_config_from_a_mapping_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'dim'"):
        ModelConfig.from_dict({**tiny_model_config().to_dict(), "dim": 64})
