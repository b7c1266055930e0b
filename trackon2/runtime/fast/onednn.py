"""Matrix products through oneDNN on the CPU at inference, with public tensor APIs only.

On the CPUs this was measured on, PyTorch's default float32 BLAS reaches about half of oneDNN's throughput on
the tracker's matmuls. ``F.linear`` runs oneDNN's kernel when its operands are in oneDNN's layout
(``Tensor.to_mkldnn``): the helpers below take weights already converted (the fast modules keep them, see
``runtime.fast.derived``), convert the activations per call (cheap next to the matmul) and convert the result
back. Only the accumulation order differs from ``F.linear`` (float32 rounding, no approximation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Largest activation (input, hidden or output) of one oneDNN call: longer inputs go in chunks of rows, so each
# chunk's tensors are reused from the allocator's free memory instead of being mapped afresh (and page-faulted
# in) on every call; a 16k-row projection went from 32 to 11 ms. Each row's result is the same either way.
CHUNK_BYTES = 8 * 2**20

OneDNNWeights = tuple[torch.Tensor, torch.Tensor | None]  # (weight, bias) in oneDNN layout


def onednn_applies(x: torch.Tensor) -> bool:
    """Whether ``x`` can go through oneDNN: float32 on the CPU, no gradients, no autocast, oneDNN available."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def to_onednn(x: torch.Tensor) -> torch.Tensor:
    return x.detach().contiguous().to_mkldnn()


def convert_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> OneDNNWeights:
    """A linear layer's weight (out, in) and bias (out,) in oneDNN layout."""
    return to_onednn(weight), None if bias is None else to_onednn(bias)


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


def project(x: torch.Tensor, weights: OneDNNWeights) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x (..., in) with converted ``weights``, in chunks of rows."""
    weight, bias = weights

    def compute(part: torch.Tensor) -> torch.Tensor:
        return F.linear(to_onednn(part), weight, bias).to_dense()

    rows = x.reshape(-1, x.shape[-1])
    return _in_row_chunks(rows, max(weight.shape), weight.shape[0], compute).view(*x.shape[:-1], weight.shape[0])


def rows_product(x: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``bias + x @ rows.T`` for x (n, D), rows (P, D) and bias (P,) when ``rows`` is an activation: converted once
    per call, x in chunks of rows."""
    return project(x, (to_onednn(rows), to_onednn(bias)))


def relu_feed_forward(x: torch.Tensor, first: OneDNNWeights, second: OneDNNWeights) -> torch.Tensor:
    """``second(relu(first(x)))`` with converted weights; the hidden tensor never leaves oneDNN's layout."""
    (first_weight, first_bias), (second_weight, second_bias) = first, second

    def compute(part: torch.Tensor) -> torch.Tensor:
        hidden = F.relu_(F.linear(to_onednn(part), first_weight, first_bias))
        return F.linear(hidden, second_weight, second_bias).to_dense()

    rows = x.reshape(-1, x.shape[-1])
    widest = max(first_weight.shape[0], first_weight.shape[1], second_weight.shape[0])
    out_features = second_weight.shape[0]
    return _in_row_chunks(rows, widest, out_features, compute).view(*x.shape[:-1], out_features)
