"""A tiny verifier configuration, for tests that need a real verifier quickly."""

from __future__ import annotations

from typing import Any

from trackon2.model.verifier import VerifierConfig


def tiny_verifier_config(**overrides: Any) -> VerifierConfig:
    """Input 64x96, D 32, 2 decoder layers, 2 local-encoder layers, critic ``feature``, T 4, CNN width 16."""
    values: dict[str, Any] = {"verifier_input_size": (64, 96), "verifier_embedding_dim": 32, "verifier_num_layers": 2,
                              "local_encoder_num_layers": 2, "query_critic": "feature", "T": 4, "cnn_encoder_dim": 16}
    values.update(overrides)
    return VerifierConfig(**values)
