"""Parameter order equals the reference's, so optimizer states (matched by position) land on the right tensors.

``tests/fixtures/official_state_dict_keys.tsv`` lists the released checkpoints' keys in ``state_dict()`` order (a
module's own parameters, then its buffers, then its children in registration order: hence ``t_embedding`` first).
The released files leave out the frozen ViT; the reference registers it first inside the adapter
(``backbone.vit_encoder.<dinov2|dinov3>``), so in a training state dict its keys follow
``backbone.vit_encoder.level_embed`` as one block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_conformance import FULL_SIZE_VITS
from trackon2.model.config import ModelConfig
from trackon2.model.trackon import TrackOn2
from trackon2.model.yaml_schema import config_from_mapping
from trackon2.training.trainer import build_optimizer

FIXTURE = Path(__file__).parent / "fixtures" / "official_state_dict_keys.tsv"
BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
VIT_ANCHOR = "backbone.vit_encoder.level_embed"


def _official_order(variant: str) -> list[str]:
    rows = [row.split("\t") for row in FIXTURE.read_text().splitlines()]
    return [name for config, name, _ in rows if config == variant]


@pytest.fixture(scope="module", params=["dinov2_s", "dinov3_s_plus"])
def full_size(request) -> tuple[str, TrackOn2]:
    variant = request.param
    factor = 1.143 if variant == "dinov3_s_plus" else 1.0
    config = config_from_mapping({"vit_backbone": variant, "vit_upsample_factor": factor, "M": 24, "D": 256,
                                  "K": 16, "backbone_config": FULL_SIZE_VITS[variant]})
    return variant, TrackOn2(ModelConfig.from_namespace(config))


def _vit_prefix(variant: str) -> str:
    return f"backbone.vit_encoder.{variant.split('_')[0]}."


def _split_vit(names: list[str], variant: str) -> tuple[list[str], list[int]]:
    prefix = _vit_prefix(variant)
    return [n for n in names if not n.startswith(prefix)], [i for i, n in enumerate(names) if n.startswith(prefix)]


def test_fixture_is_in_state_dict_order():
    names = _official_order("dinov2_s")
    assert names[0] == "t_embedding" and names[1] == "backbone.pos_embedding"
    stem = names.index("backbone.vit_encoder.spm.stem.1.weight")
    assert names[stem:stem + 5] == [f"backbone.vit_encoder.spm.stem.1.{s}" for s in
                                    ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def test_state_dict_order_equals_the_reference(full_size):
    variant, model = full_size
    names = list(model.state_dict())
    trainable, vit_positions = _split_vit(names, variant)
    assert trainable == _official_order(variant)
    anchor = names.index(VIT_ANCHOR)
    assert vit_positions == list(range(anchor + 1, anchor + 1 + len(vit_positions)))


def test_parameters_order_equals_the_reference(full_size):
    variant, model = full_size
    names = [name for name, _ in model.named_parameters()]
    trainable, vit_positions = _split_vit(names, variant)
    assert trainable == [n for n in _official_order(variant) if not n.endswith(BUFFER_SUFFIXES)]
    assert vit_positions[0] == names.index(VIT_ANCHOR) + 1


def test_optimizer_lists_the_reference_parameters_in_order(full_size):
    """The reference: one AdamW group over ``filter(requires_grad, model.parameters())`` (the ViT left out)."""
    variant, model = full_size
    args = config_from_mapping({"lr": 3e-4, "wd": 2e-5})
    optimizer = build_optimizer(model, args)
    assert len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (3e-4, 2e-5)
    name_of = {id(p): n for n, p in model.named_parameters()}
    listed = [name_of[id(p)] for p in group["params"]]
    assert listed == [n for n in _official_order(variant) if not n.endswith(BUFFER_SUFFIXES)]
