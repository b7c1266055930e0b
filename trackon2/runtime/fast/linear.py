"""``nn.Linear`` through oneDNN at float32 CPU inference, its converted weights kept on the module."""

from __future__ import annotations

import torch
import torch.nn as nn

from trackon2.runtime.fast.derived import KeepsDerivedValues
from trackon2.runtime.fast.onednn import OneDNNWeights, convert_weights, onednn_applies, project


class FastLinear(KeepsDerivedValues, nn.Linear):
    """The same layer (parameters, state-dict names); falls back to ``nn.Linear.forward`` wherever oneDNN does not
    apply (gradients, autocast, another device or dtype)."""

    def onednn_weights(self) -> OneDNNWeights:
        """Weight and bias in oneDNN layout, converted once while they are frozen."""
        return self.derived("weights", (self.weight, self.bias), lambda: convert_weights(self.weight, self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not onednn_applies(x):
            if self.weight.requires_grad:
                self.forget_derived()
            return super().forward(x)
        return project(x, self.onednn_weights())
