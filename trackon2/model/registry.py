"""The released Track-On variants: one table from a name to everything needed to build and load it.

Each variant names its model configuration (the YAML keys of the reference), its frozen ViT, its checkpoint on the
Hugging Face hub and the licence terms that come with it. The ViTs come from ``model.vit.VITS``;
``model.yaml_schema.VIT_BACKBONES`` and ``model.checkpoint.HUB_FILES`` derive from these two, and the files in
``config/`` are checked against them by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from trackon2.model.config import ModelConfig
from trackon2.model.vit import VITS, VitSpec

DINOV3_LICENCE = ("DINOv3 weights are gated: accept the DINOv3 licence on the ViT's hub page and log in "
                  "(`hf auth login`) before the first download")


@dataclass(frozen=True)
class Variant:
    """One released tracker: its model configuration, checkpoint location and licence note."""

    name: str
    config: ModelConfig
    checkpoint_repo: str
    checkpoint_file: str
    licence: str
    description: str

    @property
    def vit(self) -> VitSpec:
        return VITS[self.config.vit_backbone]

    @property
    def hub_entry_point(self) -> str:
        """The name of its ``torch.hub`` entry point in hubconf.py (a Python identifier)."""
        return self.name.replace("-", "_")


def _inference_config(vit_backbone: str, vit_upsample_factor: float) -> ModelConfig:
    """The released models' architecture (M 24, D 256, K 16, 3/3/3 layers, 384x512) and inference defaults
    (memory extended to M_i 72, visibility threshold 0.8), which all variants share."""
    return ModelConfig(input_size=(384, 512), M=24, D=256, K=16, decoder_layer_num=3, predicton_head_layer_num=3,
                       rerank_layer_num=3, vit_backbone=vit_backbone, vit_upsample_factor=vit_upsample_factor,
                       M_i=72, delta_v=0.8, grad_checkpoint=True)


_TRACKON2_LICENCE = "Track-On2 weights: see the licence of gorkaydemir/track_on2 on the hub"

VARIANTS: dict[str, Variant] = {
    variant.name: variant for variant in (
        Variant("trackon2-dinov2", _inference_config("dinov2_s", 1.0), "gorkaydemir/track_on2",
                "trackon2_dinov2_checkpoint.pt", _TRACKON2_LICENCE + "; DINOv2 is Apache-2.0",
                "Track-On2 with DINOv2 ViT-S/14, trained on Kubric (MOVi-F)"),
        Variant("trackon2-dinov3", _inference_config("dinov3_s_plus", 1.143), "gorkaydemir/track_on2",
                "trackon2_dinov3_checkpoint.pt", f"{_TRACKON2_LICENCE}; {DINOV3_LICENCE}",
                "Track-On2 with DINOv3 ViT-S+/16, trained on Kubric (MOVi-F)"),
        Variant("track-on-r", _inference_config("dinov3_s_plus", 1.143), "gorkaydemir/track_on_r", "track_on_r.pt",
                f"Track-On-R weights: see the licence of gorkaydemir/track_on_r on the hub; {DINOV3_LICENCE}",
                "the Track-On2 DINOv3 model fine-tuned on real videos with verifier-guided pseudo-labels"),
    )
}

# The short names the command-line tools accepted before the registry existed.
ALIASES = {"dinov2": "trackon2-dinov2", "dinov3": "trackon2-dinov3"}


class UnknownVariantError(ValueError):
    """A name that is neither a registered variant nor one of its aliases."""


def variant_names() -> list[str]:
    """Registered variant names and aliases, for help texts and error messages."""
    return [*VARIANTS, *ALIASES]


def is_variant_name(name: str) -> bool:
    return name in VARIANTS or name in ALIASES


def get_variant(name: str) -> Variant:
    """The variant registered under ``name`` (or one of its aliases)."""
    variant = VARIANTS.get(ALIASES.get(name, name))
    if variant is None:
        raise UnknownVariantError(f"unknown Track-On variant {name!r}; expected one of {', '.join(variant_names())}")
    return variant


def default_variant(vit_backbone: str) -> str:
    """The first registered variant whose ViT is of the same family as ``vit_backbone`` (the released weights a
    config with that ViT was used with before variants had names)."""
    family = VITS[vit_backbone].family
    return next(variant.name for variant in VARIANTS.values() if variant.vit.family == family)

