"""Gradients laid out exactly as their parameters, so that DDP copies them into its buckets without a warning.

The depthwise convolutions of the ViT-Adapter's ConvFFN have (C, 1, 3, 3) weights with strides (9, 9, 3, 1); the
CPU convolution backward returns their gradient with stride 1 in the size-1 dimension, (9, 1, 3, 1). That is the
same memory order (a stride along a dimension of size 1 is never used), so autograd keeps it as the ``.grad``, but
DDP's reducer compares every stride and warns "Grad strides do not match bucket view strides" on every rank. A
hook on each parameter with a size-1 dimension re-strides such a gradient to the parameter's own strides before it
is accumulated (a copy of a few hundred values per layer and step; the values are unchanged).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _restride_like(param: torch.Tensor):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        if grad.stride() == param.stride() or grad.layout != torch.strided:
            return grad
        return torch.empty_strided(param.shape, param.stride(), dtype=grad.dtype, device=grad.device).copy_(grad)

    return hook


def match_grad_strides(model: nn.Module) -> int:
    """Register the re-striding hook on every trainable parameter that has a size-1 dimension (only those can get a
    gradient whose strides differ from theirs while autograd's layout contract holds). Returns how many."""
    count = 0
    for param in model.parameters():
        if param.requires_grad and param.dim() > 1 and 1 in param.shape:
            param.register_hook(_restride_like(param))
            count += 1
    return count
