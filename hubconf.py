"""torch.hub entry points: ``torch.hub.load("<owner>/<repo>", "trackon2_dinov2")`` builds a ready Predictor.

One entry point per variant of model/registry.py; each takes the keyword arguments of ``Predictor.from_pretrained``
(device, dtype, M_i, delta_v, support_grid_size, ...). Weights come from the Hugging Face cache (downloaded on first
use; HF_HUB_OFFLINE=1 reads only the cache).
"""

from __future__ import annotations

from typing import Any

dependencies = ["torch", "transformers", "huggingface_hub", "yaml", "numpy", "tqdm"]


def _load(variant: str, **kwargs: Any):
    from trackon2.runtime.predictor import Predictor

    return Predictor.from_pretrained(variant, **kwargs)


def trackon2_dinov2(**kwargs: Any):
    """Track-On2 with DINOv2 ViT-S/14 (trained on Kubric)."""
    return _load("trackon2-dinov2", **kwargs)


def trackon2_dinov3(**kwargs: Any):
    """Track-On2 with DINOv3 ViT-S+/16 (trained on Kubric; DINOv3 is gated on the hub)."""
    return _load("trackon2-dinov3", **kwargs)


def track_on_r(**kwargs: Any):
    """Track-On-R: Track-On2 DINOv3 fine-tuned on real videos (DINOv3 is gated on the hub)."""
    return _load("track-on-r", **kwargs)
