"""Backbone: normalise frames, run the ViT-Adapter, project each scale to D and add a learned position map."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackon2.model.vit_adapter import ViTAdapter

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeaturePyramid(NamedTuple):
    """Token maps of one or more frames at strides 4, 8, 16, 32, each (..., tokens, D), row-major."""

    f4: torch.Tensor
    f8: torch.Tensor
    f16: torch.Tensor
    f32: torch.Tensor


class Backbone(nn.Module):
    def __init__(
        self,
        dim: int,
        input_size: tuple[int, int],
        vit_backbone: str,
        vit_upsample_factor: float = 1.0,
        backbone_config: Mapping[str, Any] | None = None,
        grad_checkpoint: bool = False,
        vit_train_mode: bool = False,
    ):
        """``dim``: width of the projected tokens; ``input_size``: (H, W) of the frames it receives."""
        super().__init__()
        self.D = dim
        self.H, self.W = input_size
        self.Hf, self.Wf = self.H // 4, self.W // 4
        self.vit_encoder = ViTAdapter(
            vit_backbone,
            vit_upsample_factor=vit_upsample_factor,
            backbone_config=backbone_config,
            with_cp=grad_checkpoint,
            vit_train_mode=vit_train_mode,
        )
        width = self.vit_encoder.embed_dim
        self.projections = nn.ModuleList([nn.Sequential(nn.Linear(width, self.D)) for _ in range(4)])
        self.pos_embedding = nn.Parameter(torch.zeros(1, self.D, self.Hf, self.Wf))
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)

    def forward(self, frames: torch.Tensor) -> FeaturePyramid:
        """frames: (N, 3, H, W) in [0, 1] at the model input size -> token maps of shape (N, h*w, D)."""
        if frames.shape[-2:] != (self.H, self.W):
            raise ValueError(f"backbone expects frames of size {(self.H, self.W)}, got {tuple(frames.shape[-2:])}")
        normalised = (frames - self.image_mean) / self.image_std
        maps = self.vit_encoder(normalised)
        tokens = []
        for feature, projection, position in zip(maps, self.projections, self.position_tokens()):
            tokens.append(projection(feature.flatten(2).transpose(1, 2)) + position)
        return FeaturePyramid(*tokens)

    def position_tokens(self) -> list[torch.Tensor]:
        """The learned position map at strides 4, 8, 16 and 32 in token order, each (1, h*w, D); the coarser maps
        are its bilinear downsamplings."""
        pos = self.pos_embedding
        levels = [pos] + [F.interpolate(pos, scale_factor=0.5**level, mode="bilinear", align_corners=False)
                          for level in range(1, 4)]
        return [level_map.flatten(2).transpose(1, 2) for level_map in levels]
