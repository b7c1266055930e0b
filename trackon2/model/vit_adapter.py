"""ViT-Adapter around a frozen DINOv2 / DINOv3 ViT: multi-scale (strides 4, 8, 16, 32) features for tracking.

A convolutional spatial prior module (SPM) produces stride 8/16/32 tokens ``c``; four interactions alternate an
injector (ViT tokens attend to ``c``), three frozen ViT blocks, and an extractor (``c`` attends to ViT tokens).
Parameter names follow the released checkpoints.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint

from trackon2.model.msda import MultiScaleDeformableAttention
from trackon2.model.vit import build_vit, run_block, vit_blocks, vit_family, vit_patch_size, vit_prefix_tokens, vit_spec

INTERACTION_INDEXES = ((0, 2), (3, 5), (6, 8), (9, 11))
Shapes = list[tuple[int, int]]


def grid_centres(shapes: Shapes, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised (x, y) centres of every cell of each grid, concatenated: (1, sum h*w, 1, 2).

    Computed in float32 whatever ``dtype`` is, as the released model was (this matters at the 1e-8 level).
    """
    centres = []
    for height, width in shapes:
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centres.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1))
    return torch.cat(centres, 0)[None, :, None].to(dtype)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """Convolutional stem giving stride 4, 8, 16, 32 maps, each mapped to the ViT width."""

    def __init__(self, inplanes: int = 64, embed_dim: int = 384):
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn_relu(3, inplanes, 2),
            *_conv_bn_relu(inplanes, inplanes, 1),
            *_conv_bn_relu(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns c1 as a (B, C, H/4, W/4) map and c2, c3, c4 as token sequences (B, h*w, C)."""
        s4 = self.stem(x)
        s8 = self.conv2(s4)
        s16 = self.conv3(s8)
        s32 = self.conv4(s16)
        tokens = [fc(s).flatten(2).transpose(1, 2) for fc, s in ((self.fc2, s8), (self.fc3, s16), (self.fc4, s32))]
        return self.fc1(s4), tokens[0], tokens[1], tokens[2]


class DWConv(nn.Module):
    """Depthwise 3x3 conv applied separately to the stride 8, 16 and 32 grids packed in one sequence."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x: (B, 4hw + hw + hw/4, C) with h x w the stride-16 grid."""
        batch, _, channels = x.shape
        sizes = [(2 * h, 2 * w), (h, w), (h // 2, w // 2)]
        parts = x.split([a * b for a, b in sizes], dim=1)
        out = [
            self.dwconv(part.transpose(1, 2).reshape(batch, channels, a, b)).flatten(2).transpose(1, 2)
            for part, (a, b) in zip(parts, sizes)
        ]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), h, w)))
        return self.drop(self.fc2(x))


class Injector(nn.Module):
    """ViT tokens attend to the SPM tokens; the update is scaled by a learned per-channel gamma (init 0)."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleDeformableAttention(dim, num_heads, num_levels=3, num_points=n_points)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, reference_points: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        return x + self.gamma * self.attn(self.query_norm(x), self.feat_norm(c), reference_points, shapes)


class Extractor(nn.Module):
    """SPM tokens attend to the ViT tokens, then a convolutional FFN."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, cffn_ratio: float = 0.25):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleDeformableAttention(dim, num_heads, num_levels=1, num_points=n_points)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(
        self, c: torch.Tensor, x: torch.Tensor, reference_points: torch.Tensor, shapes: Shapes, h: int, w: int
    ) -> torch.Tensor:
        c = c + self.attn(self.query_norm(c), self.feat_norm(x), reference_points, shapes)
        return c + self.ffn(self.ffn_norm(c), h, w)


class InteractionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, extra_extractor: bool):
        super().__init__()
        self.injector = Injector(dim, num_heads)
        self.extractor = Extractor(dim, num_heads)
        self.extra_extractors = (
            nn.Sequential(Extractor(dim, num_heads), Extractor(dim, num_heads)) if extra_extractor else None
        )


class ViTAdapter(nn.Module):
    """Multi-scale features from a frozen ViT plus trainable adapter modules."""

    def __init__(
        self,
        vit_backbone: str,
        vit_upsample_factor: float = 1.0,
        backbone_config: Mapping[str, Any] | None = None,
        with_cp: bool = False,
        conv_inplane: int = 64,
        vit_train_mode: bool = False,
    ):
        super().__init__()
        self.family = vit_family(vit_backbone)
        setattr(self, self.family, build_vit(vit_backbone, backbone_config))
        self.patch_size = vit_patch_size(self.vit)
        self.vit_upsample_factor = float(vit_upsample_factor)
        self.with_cp = with_cp
        self.vit_train_mode = vit_train_mode
        self.embed_dim = int(self.vit.config.hidden_size)
        num_blocks = len(vit_blocks(self.vit))
        if num_blocks != 12:
            raise ValueError(f"the adapter interacts with 12 ViT blocks, but the ViT has {num_blocks}")
        num_heads = vit_spec(vit_backbone).adapter_heads
        dim = self.embed_dim

        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim)
        self.interactions = nn.Sequential(
            *[InteractionBlock(dim, num_heads, extra_extractor=i == len(INTERACTION_INDEXES) - 1)
              for i in range(len(INTERACTION_INDEXES))]
        )
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norm1 = nn.BatchNorm2d(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.norm3 = nn.BatchNorm2d(dim)
        self.norm4 = nn.BatchNorm2d(dim)
        self._init_adapter_weights()

    @property
    def vit(self) -> nn.Module:
        return getattr(self, self.family)

    def _init_adapter_weights(self) -> None:
        for module in [self.up, self.spm, self.interactions]:
            module.apply(_init_module)
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()
        nn.init.normal_(self.level_embed)

    def train(self, mode: bool = True) -> "ViTAdapter":
        """The frozen ViT stays in eval mode (no dropout, no DINOv3 position-embedding augmentation) unless
        ``vit_train_mode`` (config ``frozen_vit_train_mode``) lets it follow ``mode`` as in the reference."""
        super().train(mode)
        if not self.vit_train_mode:
            self.vit.eval()
        return self

    def vit_input_size(self, height: int, width: int) -> tuple[int, int]:
        """ViT input size: the frame scaled by the upsample factor, floored to whole patches."""
        p = self.patch_size
        if self.vit_upsample_factor != 1.0:
            height, width = int(height * self.vit_upsample_factor), int(width * self.vit_upsample_factor)
        return (height // p) * p, (width // p) * p

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: normalised frames (B, 3, H, W) -> BatchNorm'd maps at strides 4, 8, 16, 32, each (B, C, h, w)."""
        batch, _, height, width = x.shape
        vit_h, vit_w = self.vit_input_size(height, width)
        x_vit = F.interpolate(x, size=(vit_h, vit_w), mode="bilinear", align_corners=False)
        h16, w16 = height // 16, width // 16
        adapter_shapes = [(height // 8, width // 8), (h16, w16), (height // 32, width // 32)]
        vit_shapes = [(vit_h // self.patch_size, vit_w // self.patch_size)]
        inject_refs = grid_centres(vit_shapes, x.device, x.dtype)
        extract_refs = grid_centres(adapter_shapes, x.device, x.dtype)

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)

        rope = self.vit.rope_embeddings(x_vit) if hasattr(self.vit, "rope_embeddings") else None
        tokens = self.vit.embeddings(x_vit)
        prefix_count = vit_prefix_tokens(self.vit)
        prefix, patches = tokens[:, :prefix_count], tokens[:, prefix_count:]
        blocks = vit_blocks(self.vit)

        for interaction, (first, last) in zip(self.interactions, INTERACTION_INDEXES):
            run = self._interaction
            args = (interaction, patches, c, prefix, blocks[first:last + 1], rope, inject_refs, extract_refs,
                    adapter_shapes, vit_shapes, h16, w16)
            if self.with_cp and self.training and torch.is_grad_enabled():
                patches, c, prefix = checkpoint.checkpoint(run, *args, use_reentrant=False)
            else:
                patches, c, prefix = run(*args)

        n2, n3 = c2.shape[1], c3.shape[1]
        c2 = c[:, :n2].transpose(1, 2).reshape(batch, -1, 2 * h16, 2 * w16)
        c3 = c[:, n2:n2 + n3].transpose(1, 2).reshape(batch, -1, h16, w16)
        c4 = c[:, n2 + n3:].transpose(1, 2).reshape(batch, -1, h16 // 2, w16 // 2)
        c1 = self.up(c2) + c1
        return [self.norm1(c1), self.norm2(c2), self.norm3(c3), self.norm4(c4)]

    @staticmethod
    def _interaction(
        interaction: InteractionBlock,
        patches: torch.Tensor,
        c: torch.Tensor,
        prefix: torch.Tensor,
        blocks: nn.ModuleList,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        inject_refs: torch.Tensor,
        extract_refs: torch.Tensor,
        adapter_shapes: Shapes,
        vit_shapes: Shapes,
        h16: int,
        w16: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Injector, three ViT blocks (with CLS/registers re-attached), extractor(s)."""
        patches = interaction.injector(patches, c, inject_refs, adapter_shapes)
        tokens = torch.cat([prefix, patches], dim=1)
        for block in blocks:
            tokens = run_block(block, tokens, rope)
        prefix, patches = tokens[:, :prefix.shape[1]], tokens[:, prefix.shape[1]:]
        c = interaction.extractor(c, patches, extract_refs, vit_shapes, h16, w16)
        if interaction.extra_extractors is not None:
            for extractor in interaction.extra_extractors:
                c = extractor(c, patches, extract_refs, vit_shapes, h16, w16)
        return patches, c, prefix


def _init_module(module: nn.Module) -> None:
    """The ViT-Adapter initialisation: truncated-normal linears, unit norms, He-style convolutions."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
