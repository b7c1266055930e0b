"""The frozen DINO ViT inside the adapter: built from the Hugging Face hub, the local cache, or a config dict.

The adapter drives the ViT piece by piece (embeddings, then blocks in groups), so this module also hides the
differences between DINOv2 and DINOv3 and between transformers 4 and 5 (where the DINOv3 blocks moved under
``.model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn as nn

from trackon2.model.errors import one_line
from trackon2.model.hub import hub_offline, hub_unreachable_reason, unreachable_message


@dataclass(frozen=True)
class VitSpec:
    """A DINO ViT the adapter can wrap: its hub id and the shapes the adapter depends on."""

    hub_id: str
    family: str  # 'dinov2' or 'dinov3': the attribute the adapter holds it under (part of the state-dict keys)
    adapter_heads: int  # attention heads of the adapter's deformable attention (6 for ViT-S, 12 for ViT-B)
    patch_size: int
    gated: bool  # the hub requires accepting a licence before downloading


# The ViTs a config's ``vit_backbone`` may name (the variants in model/registry.py point here).
VITS: dict[str, VitSpec] = {
    "dinov2_s": VitSpec("facebook/dinov2-small", "dinov2", 6, 14, gated=False),
    "dinov2_b": VitSpec("facebook/dinov2-base", "dinov2", 12, 14, gated=False),
    "dinov3_s": VitSpec("facebook/dinov3-vits16-pretrain-lvd1689m", "dinov3", 6, 16, gated=True),
    "dinov3_s_plus": VitSpec("facebook/dinov3-vits16plus-pretrain-lvd1689m", "dinov3", 6, 16, gated=True),
    "dinov3_b": VitSpec("facebook/dinov3-vitb16-pretrain-lvd1689m", "dinov3", 12, 16, gated=True),
}


class BackboneUnavailableError(RuntimeError):
    """The pretrained ViT could not be loaded from the hub or the local cache."""


def vit_family(vit_backbone: str) -> str:
    """'dinov2' or 'dinov3': also the attribute name under which the adapter holds the ViT."""
    return vit_spec(vit_backbone).family


def vit_spec(vit_backbone: str) -> VitSpec:
    """The table entry of a ``vit_backbone`` name; an unknown name is an error listing the known ones."""
    if vit_backbone not in VITS:
        raise ValueError(f"unknown vit_backbone {vit_backbone!r}; expected one of {sorted(VITS)}")
    return VITS[vit_backbone]


def build_vit(vit_backbone: str, backbone_config: Mapping[str, Any] | None = None) -> nn.Module:
    """A frozen ViT: randomly initialised from ``backbone_config`` if given, else pretrained from the hub."""
    import transformers

    if backbone_config is not None:
        options = dict(backbone_config)
        model_type = options.pop("model_type")
        options.pop("transformers_version", None)
        config = transformers.AutoConfig.for_model(model_type, **options)
        model = transformers.AutoModel.from_config(config)
    else:
        spec = vit_spec(vit_backbone)
        unreachable = None if hub_offline() else hub_unreachable_reason()
        try:
            model = transformers.AutoModel.from_pretrained(spec.hub_id, local_files_only=unreachable is not None)
        except Exception as err:
            if unreachable is not None:
                raise BackboneUnavailableError(unreachable_message(f"the ViT {spec.hub_id}", unreachable)) from None
            gated = " DINOv3 is gated: accept its licence on the hub page and log in (`hf auth login`)." if (
                spec.gated) else ""
            raise BackboneUnavailableError(
                f"could not load the pretrained ViT {spec.hub_id!r} from the Hugging Face hub or the local cache "
                f"({one_line(err)}).{gated} Offline, run once with network access (or `hf download "
                f"{spec.hub_id}`) to fill the cache "
                "and set HF_HUB_OFFLINE=1, or give `backbone_config` in the YAML to build a randomly initialised "
                "ViT (for tests)."
            ) from err
    model.requires_grad_(False)
    return model.eval()


def vit_blocks(vit: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a DINOv2 or DINOv3 model, whatever the transformers version."""
    for path in ("encoder.layer", "model.layer", "layer"):
        module: Any = vit
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    raise TypeError(f"{type(vit).__name__} has no recognisable list of transformer blocks")


def vit_prefix_tokens(vit: nn.Module) -> int:
    """Number of tokens before the patch tokens: CLS plus any register tokens."""
    return 1 + int(getattr(vit.config, "num_register_tokens", 0) or 0)


def vit_patch_size(vit: nn.Module) -> int:
    size = vit.config.patch_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def run_block(block: nn.Module, tokens: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Run one ViT block; DINOv3 blocks also take the rotary embeddings."""
    out = block(tokens) if rope is None else block(tokens, position_embeddings=rope)
    return out[0] if isinstance(out, tuple) else out
