"""The backbone with its position tokens (a function of the frozen position map only) computed once."""

from __future__ import annotations

import torch

from trackon2.model.backbone import Backbone
from trackon2.runtime.fast.derived import KeepsDerivedValues


class FastBackbone(KeepsDerivedValues, Backbone):
    """``Backbone`` keeping ``position_tokens`` while the position map is frozen (see ``runtime.fast.derived``)."""

    def position_tokens(self) -> list[torch.Tensor]:
        def make() -> list[torch.Tensor]:
            with torch.inference_mode(False):  # kept tensors must also serve calls outside inference mode
                return [tokens.contiguous() for tokens in super(FastBackbone, self).position_tokens()]

        return self.derived("position_tokens", (self.pos_embedding,), make)
