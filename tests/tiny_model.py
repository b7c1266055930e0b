"""A tiny Track-On2 configuration with a randomly initialised ViT, for tests that need a real model quickly."""

from __future__ import annotations

import argparse
from typing import Any

from trackon2.model.config import ModelConfig
from trackon2.model.yaml_schema import config_from_mapping

TINY_DINOV2 = {
    "model_type": "dinov2",
    "hidden_size": 48,
    "num_hidden_layers": 12,
    "num_attention_heads": 3,
    "mlp_ratio": 2,
    "image_size": 56,
    "patch_size": 14,
}

TINY_DINOV3 = {
    "model_type": "dinov3_vit",
    "hidden_size": 48,
    "num_hidden_layers": 12,
    "num_attention_heads": 3,
    "intermediate_size": 96,
    "patch_size": 16,
    "num_register_tokens": 4,
}


def tiny_config(**overrides: Any) -> argparse.Namespace:
    """Input 64x96, D=64, memory 4 (6 at inference), K=4, two layers everywhere, tiny random DINOv2."""
    values: dict[str, Any] = {
        "input_size": [64, 96],
        "M": 4,
        "D": 64,
        "K": 4,
        "decoder_layer_num": 2,
        "predicton_head_layer_num": 2,
        "rerank_layer_num": 2,
        "vit_backbone": "dinov2_s",
        "vit_upsample_factor": 1.0,
        "M_i": 6,
        "delta_v": 0.5,
        "grad_checkpoint": False,
        "backbone_config": dict(TINY_DINOV2),
    }
    values.update(overrides)
    return config_from_mapping(values)


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """``tiny_config``'s model part, the configuration ``TrackOn2`` takes."""
    return ModelConfig.from_namespace(tiny_config(**overrides))
