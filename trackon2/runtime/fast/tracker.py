"""Track-On2's step with memory attention in cache-sized chunks and the correlation folded into one basis."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trackon2.model.blocks import MHABlock
from trackon2.model.trackon import FrameFeatures, TrackOn2
from trackon2.runtime.fast.onednn import onednn_applies, rows_product

# Rows (sequence slots) per chunk of memory attention on the CPU: the FFN's hidden tensor stays cache-sized.
MEMORY_CHUNK_ROWS = 1024


@dataclass
class FastFrameFeatures(FrameFeatures):
    """A frame's features with its correlation basis, made on first use and shared by the step's correlations."""

    basis: torch.Tensor | None = None


class FastTrackOn2(TrackOn2):
    """``TrackOn2`` with the same parameters and results (float32 rounding aside)."""

    def encode(self, frames: torch.Tensor) -> FastFrameFeatures:
        features = super().encode(frames)
        return FastFrameFeatures(features.pyramid, features.fused)

    # ---------------------------------------------------------------------------------------------- correlation
    def correlation_basis(self, features: FrameFeatures) -> torch.Tensor:
        """The multi-scale correlation of one frame as a linear basis (B, P, D).

        Correlation is a dot product with L2-normalised tokens, and the bilinear upsampling to stride 4 and the
        4->1 fusion conv are linear, so the fused map is <q_normalised, basis[:, p]> + bias with the basis (the
        weighted sum of the upsampled normalised token maps) computed once per frame for all queries. The maps
        stay in token order (channels last) throughout, so upsampling needs no layout copies.
        """
        if isinstance(features, FastFrameFeatures) and features.basis is not None:
            return features.basis
        weights = self.ms_corr_proj.weight.flatten()
        basis = None
        for level, (tokens, shape) in enumerate(zip(features.pyramid, self.level_shapes())):
            level_map = F.normalize(tokens, p=2, dim=-1)
            if shape != (self.Hf, self.Wf):
                channels_last = level_map.unflatten(1, shape).permute(0, 3, 1, 2)
                upsampled = F.interpolate(channels_last, size=(self.Hf, self.Wf), mode="bilinear", align_corners=False)
                level_map = upsampled.permute(0, 2, 3, 1).flatten(1, 2)
            if basis is None:
                basis = level_map * weights[level]
            else:  # basis + level_map * weight in one pass, in place on the basis this method created
                basis.addcmul_(level_map, weights[level])
        if isinstance(features, FastFrameFeatures):
            features.basis = basis
        return basis

    def correlation(self, q: torch.Tensor, features: FrameFeatures) -> torch.Tensor:
        basis = self.correlation_basis(features)
        q_normalised = F.normalize(q, p=2, dim=-1).to(basis.dtype)
        bias = self.ms_corr_proj.bias.to(basis.dtype)
        if basis.shape[0] == 1 and onednn_applies(basis):  # oneDNN: about twice the batched matmul's speed here
            return rows_product(q_normalised[0], basis[0], bias.expand(basis.shape[1])).unsqueeze(0)
        return torch.baddbmm(bias, q_normalised, basis.transpose(1, 2))

    # ----------------------------------------------------------------------------------------- memory attention
    def attend_memory(self, layer: int, rows: torch.Tensor | list[torch.Tensor], q: torch.Tensor,
                      t_embedding: torch.Tensor, key_mask: torch.Tensor,
                      last: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The memory attention in chunks of sequences (on the CPU about MEMORY_CHUNK_ROWS rows each, so that a
        chunk is assembled and processed while in cache; elsewhere one chunk). ``rows`` are the memory rows
        (S, L, D) or a previous layer's chunk outputs (whose last row, that layer's query, is replaced by ``q``);
        the last layer computes the query rows only. Every row's result is the same as for all sequences at once.
        """
        chunks = rows if isinstance(rows, list) else self._memory_chunks(rows)
        block = self.memory_attention[layer]
        slots = key_mask.shape[1] - 1
        outputs, begin = [], 0
        for chunk in chunks:
            part = slice(begin, begin + chunk.shape[0])
            outputs.append(_memory_chunk(block, chunk[:, :slots], q[part], t_embedding, key_mask[part], last))
            begin = part.stop
        new_q = outputs[0][:, -1] if len(outputs) == 1 else torch.cat([out[:, -1] for out in outputs])
        return outputs, new_q

    @staticmethod
    def _memory_chunks(memory: torch.Tensor) -> list[torch.Tensor]:
        count, length = memory.shape[0], memory.shape[1] + 1
        rows = count if memory.device.type != "cpu" else MEMORY_CHUNK_ROWS // length
        return list(memory.split(max(1, rows)))


def _memory_chunk(block: MHABlock, memory: torch.Tensor, q: torch.Tensor, t_embedding: torch.Tensor,
                  key_mask: torch.Tensor, query_only: bool) -> torch.Tensor:
    """One memory-attention block over whole sequences (memory rows, then the query) -> (s, L or 1, D). The
    query's own slot (the last key) is never masked, so no row has all its keys masked."""
    part = torch.cat([memory, q.unsqueeze(1)], dim=1)
    keyed = part + t_embedding
    return block(keyed[:, -1:] if query_only else keyed, keyed, part, key_mask, may_mask_all_keys=False)
