"""The verifier reproduces the reference's ``Verifier.forward`` / ``efficient_forward`` (float64, random weights),
loads the released file's parameter layout strictly, and takes batches without touching its inputs.

``tests/fixtures/verifier_reference.pt`` was made by running the reference's own ``verifier/verifier.py`` (branch
``main`` of gorkaydemir/track_on) outside this repository in float64, with stand-ins for what it cannot import here:
mmcv's ``MultiScaleDeformableAttention`` replaced by mmcv's pure-PyTorch formulation (per-level ``grid_sample``),
torchvision by empty modules, and ``torch.hub.load`` (CoTracker3's weights) by an empty module. Its CNN encoder was
the reference's ``BasicEncoder`` at a smaller width (``cnn_encoder_dim``), all weights were perturbed randomly and
rounded to float32 values. Per case the file holds the config, weights, inputs, and the outputs of ``forward``,
``efficient_forward`` and ``efficient_forward(max_frames_per_pass=2)``. ``verifier_state_dict_keys.tsv`` lists the
names and shapes of the reference's ``Verifier`` built with its intended defaults (the released architecture).
"""

from __future__ import annotations

import ast

import pytest
import torch

from tests.conftest import FIXTURES
from tests.tiny_verifier import tiny_verifier_config
from trackon2.model.checkpoint import CheckpointError
from trackon2.model.inputs import InputError
from trackon2.model.verifier import Verifier, VerifierConfig
from trackon2.model.verifier.checkpoint import (
    build_verifier,
    load_cotracker3_encoder,
    load_verifier_weights,
    new_verifier_for_training,
)
from trackon2.model.yaml_schema import ConfigError

TOL = 1e-10


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(FIXTURES / "verifier_reference.pt", weights_only=True)


def _reference_verifier(case: dict) -> Verifier:
    verifier = Verifier(VerifierConfig.from_dict(case["config"])).double().eval()
    load_verifier_weights(verifier, {k: v.double() for k, v in case["state_dict"].items()})
    return verifier


def _inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return case["video"].double(), case["tracks"].double(), case["queries"].double()


@pytest.mark.parametrize("name", ["feature", "none"])
@pytest.mark.parametrize("frames_per_pass", [500, 2, 1])
def test_matches_the_reference_forward_and_efficient_forward(reference, name, frames_per_pass):
    case = reference[name]
    with torch.no_grad():
        logits = _reference_verifier(case)(*_inputs(case), frames_per_pass=frames_per_pass)
    for key in ("forward", "efficient_forward", "efficient_forward_chunk2"):
        assert logits.shape == case[key].shape
        error = (logits - case[key]).abs().max().item()
        assert error < TOL, f"{name} vs reference {key}: max abs error {error:.2e}"


def test_inputs_are_not_modified(reference):
    """The reference's forward rescales its tracks and queries in place; ours leaves them as they were."""
    case = reference["feature"]
    assert case["forward_mutates_inputs"]
    video, tracks, queries = _inputs(case)
    copies = [t.clone() for t in (video, tracks, queries)]
    with torch.no_grad():
        _reference_verifier(case)(video, tracks, queries)
    assert all(torch.equal(a, b) for a, b in zip((video, tracks, queries), copies))


def test_a_batch_scores_each_video_as_alone(reference):
    """The reference takes one video; ours takes a batch (different query frames per video)."""
    case = reference["feature"]
    verifier = _reference_verifier(case)
    video, tracks, queries = _inputs(case)
    other_queries = queries.clone()
    other_queries[0, :, 0] = torch.tensor([3.0, 0.0, 0.0, 4.0, 5.0])
    videos = torch.cat([video, video.flip(-1)])
    all_tracks = torch.cat([tracks, tracks.flip(1)])
    all_queries = torch.cat([queries, other_queries])
    with torch.no_grad():
        batched = verifier(videos, all_tracks, all_queries, frames_per_pass=4)
        for b in range(2):
            alone = verifier(videos[b:b + 1], all_tracks[b:b + 1], all_queries[b:b + 1])
            assert (batched[b:b + 1] - alone).abs().max().item() < TOL
    assert (batched[0] - case["forward"][0]).abs().max().item() < TOL


def _official_layout() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (FIXTURES / "verifier_state_dict_keys.tsv").read_text().splitlines():
        name, shape = line.split("\t")
        parsed = ast.literal_eval(shape)
        rows.append((name, tuple(parsed) if isinstance(parsed, tuple) else (parsed,)))
    return rows


def test_released_parameter_layout(tmp_path):
    """Names, shapes and order of the default verifier are the reference's; a file in that layout (nested and
    DDP-prefixed, as training checkpoints are) loads strictly, and a wrong one is refused with one line."""
    verifier = Verifier()
    ours = [(name, tuple(value.shape)) for name, value in verifier.state_dict().items()]
    assert ours == _official_layout()
    assert sum(p.numel() for p in verifier.parameters()) == 11329126
    torch.manual_seed(1)
    released = {f"module.{name}": torch.randn(shape) for name, shape in _official_layout()}
    torch.save({"model": released, "epoch": torch.tensor(3)}, tmp_path / "verifier.pt")
    loaded = build_verifier(tmp_path / "verifier.pt")
    assert not loaded.training
    assert torch.equal(loaded.state_dict()["layers.5.norm3.bias"], released["module.layers.5.norm3.bias"])
    del released["module.q_projection.weight"]
    torch.save(released, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\), e.g. \['q_projection.weight'\]"):
        build_verifier(tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="verifier checkpoint not found"):
        build_verifier(tmp_path / "absent.pt")


def test_construction_never_fetches_cotracker3(monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("hub access at construction")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    Verifier(tiny_verifier_config())
    build_verifier("none", tiny_verifier_config())


def _fake_cotracker3(path, verifier: Verifier) -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    encoder = {f"fnet.{k}": torch.randn_like(v) for k, v in verifier.cnn_encoder.state_dict().items()}
    torch.save({**encoder, "updateformer.weight": torch.zeros(3)}, path)
    return encoder


def test_training_from_scratch_starts_from_cotracker3_encoder(tmp_path, monkeypatch):
    config = VerifierConfig(verifier_input_size=(64, 64), verifier_embedding_dim=16, verifier_num_layers=1,
                            local_encoder_num_layers=1, T=4)
    encoder = _fake_cotracker3(tmp_path / "scaled_offline.pth", Verifier(config))
    verifier = new_verifier_for_training(config, tmp_path / "scaled_offline.pth")
    assert verifier.training
    assert torch.equal(verifier.cnn_encoder.conv3.weight, encoder["fnet.conv3.weight"])
    assert torch.equal(verifier.cnn_encoder.layer4[1].conv2.bias, encoder["fnet.layer4.1.conv2.bias"])

    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, name: calls.append((repo, name)) or str(tmp_path / "scaled_offline.pth"))
    load_cotracker3_encoder(Verifier(config))
    assert calls == [("facebook/cotracker3", "scaled_offline.pth")]
    small = Verifier(tiny_verifier_config())
    with pytest.raises(CheckpointError, match="cnn_encoder_dim must be 128"):
        load_cotracker3_encoder(small, tmp_path / "scaled_offline.pth")
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "not_cotracker.pth")
    with pytest.raises(CheckpointError, match="not a CoTracker3 checkpoint"):
        load_cotracker3_encoder(small, tmp_path / "not_cotracker.pth")


def _tiny_inputs(batch: int = 1, frames: int = 6, points: int = 4, candidates: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(batch, frames, 3, 48, 80, generator=g) * 255
    tracks = torch.rand(batch, frames, points, candidates, 2, generator=g) * torch.tensor([80.0, 48.0])
    queries = torch.cat([torch.randint(0, frames, (batch, points, 1), generator=g).float(),
                         torch.rand(batch, points, 2, generator=g) * torch.tensor([80.0, 48.0])], dim=2)
    return video, tracks, queries


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    verifier = Verifier(tiny_verifier_config())
    inputs = _tiny_inputs()
    verifier.train()
    assert not torch.equal(verifier(*inputs), verifier(*inputs))
    verifier.eval()
    with torch.no_grad():
        assert torch.equal(verifier(*inputs), verifier(*inputs))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    verifier = Verifier(tiny_verifier_config()).eval()
    verifier(*_tiny_inputs(), frames_per_pass=2).square().sum().backward()
    missing = [name for name, p in verifier.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_cpu_autocast_bfloat16_is_close_to_float32():
    torch.manual_seed(0)
    verifier = Verifier(tiny_verifier_config()).eval()
    inputs = _tiny_inputs()
    with torch.no_grad():
        exact = verifier(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = verifier(*inputs)
    assert mixed.shape == exact.shape and torch.isfinite(mixed).all()
    assert (mixed.float() - exact).abs().max().item() < 0.1 * exact.abs().max().item()


def test_bad_inputs_get_one_clear_line():
    verifier = Verifier(tiny_verifier_config()).eval()
    video, tracks, queries = _tiny_inputs()
    late = queries.clone()
    late[0, 0, 0] = 6
    with pytest.raises(InputError, match="at or after the last frame"):
        verifier(video, tracks, late)
    with pytest.raises(InputError, match=r"candidate tracks must have shape \(B=1, T=6, N, M, 2\)"):
        verifier(video, tracks[:, :5], queries)
    with pytest.raises(InputError, match="queries have 3 points but the candidate tracks 4"):
        verifier(video, tracks, queries[:, :3])


def test_config_validation_and_the_reference_yaml(tmp_path):
    (tmp_path / "train_verifier.yaml").write_text(
        "verifier_input_size: [384, 512]\nverifier_embedding_dim: 256\nverifier_num_layers: 6\n"
        "local_encoder_num_layers: 3\nquery_critic: \"feature\"\ninput_size: [384, 512]\nN: 384\nT: 24\nlr: 0.0005\n")
    assert VerifierConfig.from_yaml(tmp_path / "train_verifier.yaml") == VerifierConfig()
    with pytest.raises(ConfigError, match="multiples of 32"):
        VerifierConfig(verifier_input_size=(380, 512))
    with pytest.raises(ConfigError, match="query_critic is 'pos_embedding'"):
        VerifierConfig(query_critic="pos_embedding")
    with pytest.raises(ConfigError, match="'lr' are not verifier settings"):
        VerifierConfig.from_dict({"lr": 0.1})
