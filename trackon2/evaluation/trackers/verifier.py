"""The verifier ensemble as an evaluation entry: Track-On-R's verifier chooses, per point and frame, among the
trackers listed before it (``--model_names A B verifier --tracker_options verifier.checkpoint=verifier.pt``).

Options: ``checkpoint`` (a verifier file, ``verifier`` for the released weights, ``none`` for random weights),
``config`` (a verifier YAML; the released configuration by default) and ``device``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trackon2.evaluation.trackers.registry import TrackerRegistryError, register_tracker
from trackon2.model.verifier import VerifierEnsemble


def _check(checkpoint: str | None = "verifier", config: str | None = None, **_: Any) -> None:
    """Files named by the options exist (before any work starts)."""
    if config is not None and not Path(config).is_file():
        raise TrackerRegistryError(f"verifier: config file not found: {config}")
    if checkpoint not in (None, "verifier", "none") and not Path(checkpoint).is_file():
        raise TrackerRegistryError(f"verifier: checkpoint file not found: {checkpoint}")


@register_tracker("verifier", ensemble=True, description="Track-On-R's learned verifier over the listed trackers",
                  check=_check)
def build_verifier_ensemble(checkpoint: str | None = "verifier", config: str | None = None,
                            device: str | torch.device = "cpu") -> VerifierEnsemble:
    return VerifierEnsemble(checkpoint or "verifier", config, device=device)
