"""Command-line device selection: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch


def parse_device(requested: str | None) -> torch.device:
    """The requested torch device, or cuda when available else cpu; ValueError if unusable here."""
    try:
        device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine")
    return device
