"""The YAML configs load with the reference's keys; typos and wrong types are clear errors."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from trackon2.model.yaml_schema import ConfigError, config_from_mapping, load_config


@pytest.mark.parametrize("name, backbone, factor", [("test.yaml", "dinov3_s_plus", 1.143),
                                                     ("test_dinov2.yaml", "dinov2_s", 1.0),
                                                     ("train.yaml", "dinov3_s_plus", 1.143)])
def test_shipped_configs_load(name, backbone, factor):
    config = load_config(ROOT / "config" / name)
    assert config.vit_backbone == backbone and config.vit_upsample_factor == factor
    assert config.input_size == [384, 512] and (config.M, config.D, config.K, config.M_i) == (24, 256, 16, 72)
    assert config.delta_v == 0.8 and config.predicton_head_layer_num == 3


def test_train_config_has_the_reference_recipe():
    config = load_config(ROOT / "config" / "train.yaml")
    assert (config.lr, config.wd, config.bs, config.N, config.T, config.seed) == (5e-4, 1e-5, 1, 384, 48, 1234)
    assert config.frame_sampling == "uniform" and config.frame_sample_ratio == 2.0 and config.lambda_patch_cls == 3.0


def test_typo_names_the_closest_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("input_size: [384, 512]\nprediction_head_layer_num: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'predicton_head_layer_num'"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("values, message", [
    ({"M": "24"}, "'M' must be int"),
    ({"M": True}, "boolean"),
    ({"vit_backbone": "dinov4_s"}, "expected one of"),
    ({"input_size": [384]}, "two positive integers"),
    ({"input_size": [100, 512]}, "divisible by 32"),
    ({"backbone_config": {"hidden_size": 8}}, "model_type"),
])
def test_bad_values_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(values)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("M: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_overrides_and_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("M: 12\n")
    config = load_config(tmp_path / "c.yaml", M_i=30, checkpoint_path=None)
    assert config.M == 12 and config.M_i == 30 and config.D == 256
