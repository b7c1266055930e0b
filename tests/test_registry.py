"""The variant registry is the one source of the released variants' facts; the CLIs take its names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trackon2.evaluation import eval as eval_cli
from trackon2.evaluation.speed import benchmark
from trackon2.model import checkpoint as checkpoint_module
from trackon2.model import yaml_schema as config_module
from trackon2.model.config import ModelConfig
from trackon2.model.registry import ALIASES, VARIANTS, UnknownVariantError, default_variant, get_variant
from trackon2.model.vit import VITS
from trackon2.utils import model_options


def test_variants_hold_the_released_facts():
    dinov2, dinov3, track_on_r = (get_variant(name) for name in ("trackon2-dinov2", "trackon2-dinov3", "track-on-r"))
    assert dinov2.checkpoint_repo == dinov3.checkpoint_repo == "gorkaydemir/track_on2"
    assert (dinov2.checkpoint_file, dinov3.checkpoint_file) == ("trackon2_dinov2_checkpoint.pt",
                                                                "trackon2_dinov3_checkpoint.pt")
    assert (track_on_r.checkpoint_repo, track_on_r.checkpoint_file) == ("gorkaydemir/track_on_r", "track_on_r.pt")
    assert dinov2.vit.hub_id == "facebook/dinov2-small" and not dinov2.vit.gated
    assert dinov3.vit.hub_id == track_on_r.vit.hub_id == "facebook/dinov3-vits16plus-pretrain-lvd1689m"
    assert dinov3.vit.gated and "licence" in dinov3.licence and "licence" in track_on_r.licence
    assert (dinov2.vit.patch_size, dinov3.vit.patch_size, dinov3.vit.adapter_heads) == (14, 16, 6)
    # Track-On-R is the Track-On2 DINOv3 model with other weights: same architecture and inference settings.
    assert track_on_r.config == dinov3.config
    assert (dinov3.config.M_i, dinov3.config.delta_v, dinov3.config.vit_upsample_factor) == (72, 0.8, 1.143)
    assert {variant.hub_entry_point for variant in VARIANTS.values()} == {"trackon2_dinov2", "trackon2_dinov3",
                                                                         "track_on_r"}


@pytest.mark.parametrize(("yaml_name", "variant"), [("test.yaml", "trackon2-dinov3"),
                                                    ("test_dinov2.yaml", "trackon2-dinov2")])
def test_shipped_yaml_files_agree_with_the_registry(yaml_name, variant):
    assert ModelConfig.from_yaml(ROOT / "config" / yaml_name) == get_variant(variant).config


def test_old_tables_derive_from_the_registry():
    assert config_module.VIT_BACKBONES == tuple(VITS)
    assert checkpoint_module.HUB_FILES == {name: get_variant(name).checkpoint_file for name in [*VARIANTS, *ALIASES]}
    assert get_variant("dinov2") is VARIANTS["trackon2-dinov2"] and get_variant("dinov3") is VARIANTS["trackon2-dinov3"]
    assert default_variant("dinov2_b") == "trackon2-dinov2" and default_variant("dinov3_s") == "trackon2-dinov3"


def test_unknown_variant_lists_the_known_names():
    with pytest.raises(UnknownVariantError, match="unknown Track-On variant 'trackon3'; expected one of "
                                                  "trackon2-dinov2, trackon2-dinov3, track-on-r, dinov2, dinov3"):
        get_variant("trackon3")


@pytest.fixture()
def fake_downloads(monkeypatch, tmp_path) -> list[str]:
    """Released checkpoints 'downloaded' as empty files, recording which variant was asked for."""
    asked: list[str] = []

    def download(name: str) -> Path:
        asked.append(name)
        return tmp_path / f"{name}.pt"

    monkeypatch.setattr(model_options, "download_released_checkpoint", download)
    return asked


def test_variant_name_brings_its_configuration(fake_downloads, tmp_path):
    config, checkpoint = model_options.load_model_options("track-on-r", None)
    assert ModelConfig.from_namespace(config) == get_variant("track-on-r").config
    assert checkpoint == tmp_path / "track-on-r.pt" and fake_downloads == ["track-on-r"]


def test_explicit_config_wins_and_default_checkpoint_follows_its_vit(fake_downloads):
    config, _ = model_options.load_model_options("dinov3", str(ROOT / "config" / "test_dinov2.yaml"))
    assert config.vit_backbone == "dinov2_s"
    config, _ = model_options.load_model_options(None, str(ROOT / "config" / "test_dinov2.yaml"))
    assert fake_downloads == ["dinov3", "trackon2-dinov2"]


def test_file_checkpoint_uses_the_default_config(tmp_path):
    (tmp_path / "mine.pt").write_bytes(b"")
    config, checkpoint = model_options.load_model_options(str(tmp_path / "mine.pt"), None)
    assert config.vit_backbone == "dinov3_s_plus" and checkpoint == tmp_path / "mine.pt"


def test_evaluation_and_benchmark_take_variant_names_and_old_flags(tmp_path):
    (tmp_path / "davis.pkl").write_bytes(b"")
    args = eval_cli.parse_args(["--checkpoint", "track-on-r", "--dataset_name", "davis",
                                "--dataset_path", str(tmp_path / "davis.pkl")])
    assert args.model_checkpoint_path == "track-on-r" and args.model_config_path is None
    (tmp_path / "mine.pt").write_bytes(b"")
    args = eval_cli.parse_args(["--model_checkpoint_path", str(tmp_path / "mine.pt"), "--dataset_name", "davis",
                                "--dataset_path", str(tmp_path / "davis.pkl")])
    assert args.model_checkpoint_path == str(tmp_path / "mine.pt")
    assert benchmark.parse_args(["--checkpoint", "trackon2-dinov2"]).model_checkpoint_path == "trackon2-dinov2"
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--checkpoint", "trackon3"])


def test_evaluation_settings_are_typed(tmp_path):
    (tmp_path / "davis.pkl").write_bytes(b"")
    settings = eval_cli.parse_args(["--checkpoint", "trackon2-dinov2", "--dataset_name", "davis", "--dataset_path",
                                    str(tmp_path / "davis.pkl"), "--max_videos", "2", "--device", "cpu"])
    assert isinstance(settings, eval_cli.EvalConfig)
    assert (settings.max_videos, settings.device.type, settings.strict) == (2, "cpu", False)
