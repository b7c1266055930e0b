"""The one owner of the inference memory size M_i: user override, benchmark, training-time evaluation, config."""

from __future__ import annotations

import pytest

from trackon2.model.registry import VARIANTS
from trackon2.runtime.memory_size import DEFAULT_MEMORY_SIZE, inference_memory_size


def test_the_order_of_the_rules():
    assert inference_memory_size(None) == DEFAULT_MEMORY_SIZE == 72
    assert inference_memory_size(48) == 48
    assert inference_memory_size(48, benchmark="kinetics") == 48
    assert inference_memory_size(48, benchmark="davis") == 24
    assert inference_memory_size(48, benchmark="kinetics", training_memory_size=24) == 24
    assert inference_memory_size(48, benchmark="davis", training_memory_size=12) == 24
    assert inference_memory_size(48, benchmark="davis", override=100, training_memory_size=12) == 100


def test_released_variants_use_the_default():
    assert {variant.config.M_i for variant in VARIANTS.values()} == {DEFAULT_MEMORY_SIZE}


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        inference_memory_size(8, override=0)
