"""Linear layers through oneDNN on the CPU at inference, with public tensor APIs only.

On the CPUs this was measured on, PyTorch's default float32 BLAS reaches about half of oneDNN's throughput on
the tracker's matmuls. ``F.linear`` runs oneDNN's kernel when its operands are in oneDNN's layout
(``Tensor.to_mkldnn``), so the helpers below convert the activations per call (cheap next to the matmul) and
convert the result back; frozen weights are converted once and kept until the parameter they view changes. They
fall back to plain ``F.linear`` whenever gradients are recorded, under autocast, off the CPU, for dtypes other
than float32, or where PyTorch was built without oneDNN. Only the accumulation order differs from the default
path (float32 rounding, no approximation).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def onednn_applies(x: torch.Tensor) -> bool:
    """Whether ``x`` would go through oneDNN: float32 on the CPU, inference, no autocast, oneDNN available."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


# id(owner) -> (weak reference to the owner, its storage, {view key: (owner version, the view in oneDNN layout)}).
# The storage is held (not the owner, which must stay collectable) so that, should the owner be given new storage,
# the old buffer's address cannot be reused for it unnoticed.
_WEIGHT_COPIES: dict[int, tuple[weakref.ref, torch.UntypedStorage, dict[tuple, tuple[int, torch.Tensor]]]] = {}


def _forget(owner_id: int) -> None:
    _WEIGHT_COPIES.pop(owner_id, None)


def keeps_derived_values(tensor: torch.Tensor) -> bool:
    """Whether values derived from ``tensor`` may be kept between calls and checked against its version counter:
    frozen (``requires_grad`` False; an optimiser may write a trainable one without bumping the version) and not
    an inference tensor (which has no version counter)."""
    return not tensor.requires_grad and not tensor.is_inference()


def onednn_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight.to_mkldnn()``, converted once and reused for frozen weights (``requires_grad`` False, as in the
    frozen ViT and a ``Predictor``'s model) while the tensor they belong to (the parameter a slice views) keeps its
    storage and is not modified in place (its version counter, which in-place writes bump; writes through
    ``.data`` do not, so a frozen weight changed that way must be reloaded with ``load_state_dict`` or
    ``copy_``). Trainable weights, whose optimiser may write them without bumping the version (fused AdamW),
    and inference tensors (no version counter) are converted every time."""
    owner = weight if weight._base is None else weight._base
    if not keeps_derived_values(owner):
        return weight.to_mkldnn()
    entry = _WEIGHT_COPIES.get(id(owner))
    storage = owner.untyped_storage()
    if entry is None or entry[0]() is not owner or entry[1].data_ptr() != storage.data_ptr():
        if entry is None or entry[0]() is not owner:
            weakref.finalize(owner, _forget, id(owner))
        entry = (weakref.ref(owner), storage, {})  # new owner or new storage: older copies are dropped
        _WEIGHT_COPIES[id(owner)] = entry
    key = (weight.data_ptr(), tuple(weight.shape), weight.stride())
    version = owner._version
    cached = entry[2].get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    converted = weight.to_mkldnn()
    entry[2][key] = (version, converted)
    return converted


# Largest activation (input, hidden or output) of one oneDNN call: longer inputs go in chunks of rows, so each
# chunk's tensors are reused from the allocator's free memory instead of being mapped afresh (and page-faulted
# in) on every call; a 16k-row projection went from 32 to 11 ms. Each row's result is the same either way.
CHUNK_BYTES = 8 * 2**20


def _to_onednn(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().to_mkldnn()


def _in_row_chunks(rows: torch.Tensor, widest: int, out_features: int,
                   compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``compute`` (rows, in) -> (rows, out_features), dense, applied to chunks of at most CHUNK_BYTES per row
    width ``widest``."""
    chunk = max(1, CHUNK_BYTES // (widest * rows.element_size()))
    if rows.shape[0] <= chunk:
        return compute(rows)
    out = rows.new_empty(rows.shape[0], out_features)
    for begin in range(0, rows.shape[0], chunk):
        out[begin:begin + chunk] = compute(rows[begin:begin + chunk])
    return out


def _project(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` of dense rows (n, in) with a weight and bias already in oneDNN layout -> dense (n, out),
    in chunks of rows."""
    def project(part: torch.Tensor) -> torch.Tensor:
        return F.linear(_to_onednn(part), weight, bias).to_dense()

    return _in_row_chunks(rows, max(weight.shape), weight.shape[0], project)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x of shape (..., in)."""
    if not onednn_applies(x):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    projected = _project(rows, onednn_weight(weight), None if bias is None else onednn_weight(bias))
    return projected.view(*x.shape[:-1], weight.shape[0])


def rows_product(x: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``bias + x @ rows.T`` for x (n, D), rows (P, D) and bias (P,) when ``rows`` is an activation, not a
    parameter: through oneDNN it is converted once per call (never kept) and x goes in chunks of rows."""
    if not onednn_applies(x):
        return torch.addmm(bias, x, rows.T)
    return _project(x, _to_onednn(rows), _to_onednn(bias))


def relu_feed_forward(x: torch.Tensor, first: nn.Linear, second: nn.Linear) -> torch.Tensor:
    """``second(relu(first(x)))``; through oneDNN the hidden tensor never leaves oneDNN's layout."""
    if not onednn_applies(x):
        return second(F.relu_(first(x)))
    (first_weight, first_bias), (second_weight, second_bias) = (
        (onednn_weight(layer.weight), None if layer.bias is None else onednn_weight(layer.bias))
        for layer in (first, second))

    def feed_forward(part: torch.Tensor) -> torch.Tensor:
        hidden = F.relu_(F.linear(_to_onednn(part), first_weight, first_bias))
        return F.linear(hidden, second_weight, second_bias).to_dense()

    rows = x.reshape(-1, x.shape[-1])
    widest = max(first.in_features, first.out_features, second.out_features)
    return _in_row_chunks(rows, widest, second.out_features, feed_forward).view(*x.shape[:-1], second.out_features)


class OneDNNLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters, same state-dict names) whose forward goes through ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def route_linears_through_onednn(module: nn.Module) -> nn.Module:
    """Replace every plain ``nn.Linear`` inside ``module`` by a ``OneDNNLinear`` holding the same parameters (for
    third-party modules such as the transformers ViT, whose forward calls its linears itself)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                routed = OneDNNLinear(child.in_features, child.out_features, bias=child.bias is not None,
                                      device="meta")
                routed.weight = child.weight
                routed.bias = child.bias
                routed.train(child.training)
                setattr(parent, name, routed)
    return module
