"""The frozen DINO ViT inside the adapter: built from the Hugging Face hub, the local cache, or a config dict.

The adapter drives the ViT piece by piece (embeddings, then blocks in groups), so this module also hides the
differences between DINOv2 and DINOv3 and between transformers 4 and 5 (where the DINOv3 blocks moved under
``.model``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from utils.errors import one_line

HUB_NAMES = {
    "dinov2_s": "facebook/dinov2-small",
    "dinov2_b": "facebook/dinov2-base",
    "dinov3_s": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "dinov3_s_plus": "facebook/dinov3-vits16plus-pretrain-lvd1689m",
    "dinov3_b": "facebook/dinov3-vitb16-pretrain-lvd1689m",
}


class BackboneUnavailableError(RuntimeError):
    """The pretrained ViT could not be loaded from the hub or the local cache."""


def vit_family(vit_backbone: str) -> str:
    """'dinov2' or 'dinov3': also the attribute name under which the adapter holds the ViT."""
    family = vit_backbone.split("_")[0]
    if family not in ("dinov2", "dinov3") or vit_backbone not in HUB_NAMES:
        raise ValueError(f"unknown vit_backbone {vit_backbone!r}; expected one of {sorted(HUB_NAMES)}")
    return family


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
        name = HUB_NAMES[vit_backbone]
        try:
            model = transformers.AutoModel.from_pretrained(name)
        except Exception as err:
            gated = " DINOv3 is gated: accept its licence on the hub page and log in (`hf auth login`)." if (
                "dinov3" in name) else ""
            raise BackboneUnavailableError(
                f"could not load the pretrained ViT {name!r} from the Hugging Face hub or the local cache "
                f"({one_line(err)}).{gated} Offline, run once with network access to fill the cache "
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
