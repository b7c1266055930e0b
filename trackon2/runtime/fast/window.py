"""The query memory as a window sliding through a larger buffer, so a frame's write does not copy the memory."""

from __future__ import annotations

import torch

from trackon2.model.memory import QueryMemory


class _SlidingBuffer:
    """A buffer of L + L // 4 slots (at least L + 1) on dim 2 that a window of L slots slides through."""

    def __init__(self, window: torch.Tensor) -> None:
        slots = window.shape[2]
        self.buffer = window.new_empty(*window.shape[:2], slots + max(1, slots // 4), *window.shape[3:])
        self.buffer[:, :, :slots] = window
        self.start = 0
        self.slots = slots

    def can_slide(self) -> bool:
        writable = torch.is_inference_mode_enabled() or not self.buffer.is_inference()
        return writable and self.start + self.slots < self.buffer.shape[2]

    def slide(self, newest: torch.Tensor) -> torch.Tensor:
        """Write ``newest`` (B, N, 1, ...) after the window and move the window by one slot."""
        self.buffer[:, :, self.start + self.slots] = newest[:, :, 0]
        self.start += 1
        return self.buffer[:, :, self.start:self.start + self.slots]


class WindowMemory(QueryMemory):
    """``QueryMemory`` whose features and mask are views into buffers this memory owns: a write fills the slot
    after the window and moves the view by one; only when a buffer is used up (every L // 4 writes) is the window
    copied into a new one. Views handed out earlier never change (later writes land beyond them). With gradients
    it writes as the plain memory does (autograd forbids writing into a buffer whose views it saved)."""

    def __init__(self, features: torch.Tensor, empty: torch.Tensor, capacity: int | None = None,
                 first_slot: int = 0) -> None:
        super().__init__(features, empty, capacity, first_slot)
        self._buffers: dict[str, _SlidingBuffer] = {}

    def _slide(self, window: torch.Tensor, newest: torch.Tensor) -> torch.Tensor:
        if window.numel() == 0 or (torch.is_grad_enabled() and (window.requires_grad or newest.requires_grad)):
            self._buffers.clear()
            return super()._slide(window, newest)
        name = "mask" if window.dtype == torch.bool else "features"
        buffer = self._buffers.get(name)
        if buffer is None or not buffer.can_slide():
            buffer = self._buffers[name] = _SlidingBuffer(window)
        return buffer.slide(newest)

    def replace(self, features: torch.Tensor, empty: torch.Tensor) -> None:
        super().replace(features, empty)
        self._buffers.clear()
