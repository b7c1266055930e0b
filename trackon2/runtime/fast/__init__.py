"""The fast forms of Track-On2's functions, switched on and off in one place.

``set_fast(model)`` turns every module of a plain model (``model/``) into its fast subclass, in place: the same
parameters, state-dict names and results (float32 summation order aside), each fast method falling back to the
plain one (``super()``) wherever its faster form does not apply (training, gradients, autocast, another device
or dtype). ``set_fast(model, False)`` turns them back. The online runtime (``runtime.online``) also reads the
switch: a fast model gets the sliding memory window and, on the CPU, skips memory slots that are empty for
every query.

| plain (``model/``)              | fast (``runtime/fast/``)     | what is faster                                   |
|---------------------------------|------------------------------|--------------------------------------------------|
| ``nn.Linear``                   | ``FastLinear``               | oneDNN matmuls on the CPU, weights converted once |
| ``nn.MultiheadAttention``       | ``FastMultiheadAttention``   | its in-projection by parts, through oneDNN        |
| ``MHABlock`` / ``DMSMHABlock``  | ``FastMHABlock`` / ``FastDMSMHABlock`` | fused / single-query attention, oneDNN feed-forward |
| ``MultiScaleDeformableAttention`` | ``FastDeformableAttention`` | one gather on the CPU, mmcv's kernel on CUDA     |
| ``Backbone``                    | ``FastBackbone``             | position tokens computed once                    |
| ``TrackOn2``                    | ``FastTrackOn2``             | chunked memory attention, folded correlation     |
| ``QueryMemory``                 | ``WindowMemory``             | no copy of the memory per frame                  |
"""

from __future__ import annotations

import torch.nn as nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from trackon2.model.backbone import Backbone
from trackon2.model.blocks import DMSMHABlock, MHABlock
from trackon2.model.memory import QueryMemory
from trackon2.model.msda import MultiScaleDeformableAttention
from trackon2.model.trackon import TrackOn2
from trackon2.runtime.fast.attention import FastDMSMHABlock, FastMHABlock, FastMultiheadAttention, FastOutProjection
from trackon2.runtime.fast.backbone import FastBackbone
from trackon2.runtime.fast.deformable import FastDeformableAttention
from trackon2.runtime.fast.derived import KeepsDerivedValues, forget_all_derived
from trackon2.runtime.fast.linear import FastLinear
from trackon2.runtime.fast.tracker import FastTrackOn2
from trackon2.runtime.fast.window import WindowMemory

FAST_FORMS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: FastLinear,
    NonDynamicallyQuantizableLinear: FastOutProjection,
    nn.MultiheadAttention: FastMultiheadAttention,
    MHABlock: FastMHABlock,
    DMSMHABlock: FastDMSMHABlock,
    MultiScaleDeformableAttention: FastDeformableAttention,
    Backbone: FastBackbone,
    TrackOn2: FastTrackOn2,
}
PLAIN_FORMS = {fast: plain for plain, fast in FAST_FORMS.items()}

__all__ = ["FAST_FORMS", "PLAIN_FORMS", "set_fast", "is_fast", "memory_class", "forget_all_derived"]


def set_fast(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every module of ``model`` to its fast form (``enabled``) or back to the plain one; returns it."""
    table = FAST_FORMS if enabled else PLAIN_FORMS
    for module in model.modules():
        target = table.get(type(module))
        if target is None:
            continue
        if isinstance(module, KeepsDerivedValues):
            module.forget_derived()
        module.__class__ = target
    return model


def is_fast(model: nn.Module) -> bool:
    """Whether ``model`` (a tracker) runs its fast forms."""
    return isinstance(model, FastTrackOn2)


def memory_class(model: nn.Module) -> type[QueryMemory]:
    """The memory a tracker state of ``model`` holds: the sliding window for a fast model."""
    return WindowMemory if is_fast(model) else QueryMemory
