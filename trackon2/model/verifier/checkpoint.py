"""Verifier weights: the released ``verifier.pt``, our own checkpoints, and CoTracker3's encoder for new training.

A verifier checkpoint is a raw state dict or one nested under ``state_dict`` / ``model`` / ``model_state`` /
``ema_state_dict`` (DDP's ``module.`` prefix is stripped), and it must fit the model exactly. CoTracker3's encoder
weights are read only when a verifier is started from scratch for training, never when one is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from trackon2.model.checkpoint import CheckpointError, extract_state_dict, read_checkpoint, state_dict_mismatch
from trackon2.model.errors import one_line
from trackon2.model.verifier.config import VerifierConfig
from trackon2.model.verifier.verifier import Verifier

VERIFIER_NAME = "verifier"  # the released weights' name wherever a checkpoint is asked for
VERIFIER_REPO, VERIFIER_FILE = "gorkaydemir/track_on_r", "verifier.pt"
COTRACKER3_REPO, COTRACKER3_FILE = "facebook/cotracker3", "scaled_offline.pth"
COTRACKER3_ENCODER_PREFIX = "fnet."  # CoTracker3 names its BasicEncoder ``fnet``
RANDOM_WEIGHTS = "none"


def _hub_file(repo: str, filename: str, what: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as err:
        raise CheckpointError(
            f"{what}: could not get {filename} from the hub repository {repo} or the local cache "
            f"({one_line(err)}). Fetch it once with network access (`hf download {repo} {filename}`; offline runs "
            "then find it with HF_HUB_OFFLINE=1), or download it by hand and pass its path instead."
        ) from err


def download_verifier_checkpoint() -> Path:
    """The released verifier (``gorkaydemir/track_on_r`` / ``verifier.pt``) from the Hugging Face cache."""
    return _hub_file(VERIFIER_REPO, VERIFIER_FILE, "the released verifier")


def _mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    return state_dict_mismatch(state, model.state_dict())


def load_verifier_weights(verifier: Verifier, checkpoint: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load a verifier checkpoint strictly: every parameter present with its shape, nothing else."""
    state = extract_state_dict(checkpoint)
    problems = _mismatch(verifier, state)
    if problems:
        raise CheckpointError(f"{source} does not match the verifier built from this config ({'; '.join(problems)}). "
                              "Check the verifier config (input size, embedding dim, layer counts, query_critic, T).")
    non_finite = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if non_finite:
        raise CheckpointError(f"{source} holds NaN or infinite weights in {len(non_finite)} tensor(s), e.g. "
                              f"{non_finite[:3]}")
    verifier.load_state_dict(state, strict=True)


def resolve_verifier_checkpoint(name: str | Path | None) -> Path | None:
    """A checkpoint file from a user's value: a file, ``verifier`` (the released weights), or None / ``none``
    (random weights)."""
    if name is None or str(name) == RANDOM_WEIGHTS:
        return None
    if str(name) == VERIFIER_NAME:
        return download_verifier_checkpoint()
    if not Path(name).is_file():
        raise CheckpointError(f"verifier checkpoint not found: {name} (give a file, '{VERIFIER_NAME}' for the "
                              f"released weights, or '{RANDOM_WEIGHTS}' for random weights)")
    return Path(name)


def build_verifier(checkpoint: str | Path | None = None,
                   config: VerifierConfig | Mapping[str, Any] | str | Path | None = None,
                   device: str | torch.device | None = None) -> Verifier:
    """A verifier in eval mode: ``config`` a VerifierConfig, a mapping of its keys or a YAML file (default: the
    released architecture); ``checkpoint`` as ``resolve_verifier_checkpoint`` takes it."""
    if config is None or isinstance(config, VerifierConfig):
        config = config or VerifierConfig()
    elif isinstance(config, Mapping):
        config = VerifierConfig.from_dict(config)
    else:
        config = VerifierConfig.from_yaml(config)
    path = resolve_verifier_checkpoint(checkpoint)
    verifier = Verifier(config)
    if path is not None:
        load_verifier_weights(verifier, read_checkpoint(path), source=f"verifier checkpoint {path}")
    return verifier.to(device).eval() if device is not None else verifier.eval()


def cotracker3_encoder_state(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The ``fnet.*`` entries of a CoTracker3 checkpoint, without the prefix."""
    state = extract_state_dict(checkpoint)
    prefix = COTRACKER3_ENCODER_PREFIX
    encoder = {name[len(prefix):]: value for name, value in state.items() if name.startswith(prefix)}
    if not encoder:
        raise CheckpointError(f"{source} has no '{COTRACKER3_ENCODER_PREFIX}*' entries: not a CoTracker3 checkpoint")
    return encoder


def load_cotracker3_encoder(verifier: Verifier, checkpoint_path: str | Path | None = None) -> Path:
    """Initialise the verifier's CNN encoder from CoTracker3's (the local file, else ``facebook/cotracker3`` /
    ``scaled_offline.pth`` from the hub): the start of a verifier trained from scratch. Returns the file used."""
    path = Path(checkpoint_path) if checkpoint_path is not None else _hub_file(
        COTRACKER3_REPO, COTRACKER3_FILE, "CoTracker3's encoder weights")
    source = f"CoTracker3 checkpoint {path}"
    state = cotracker3_encoder_state(read_checkpoint(path), source)
    problems = _mismatch(verifier.cnn_encoder, state)
    if problems:
        raise CheckpointError(f"{source}: its encoder does not match the verifier's ({'; '.join(problems)}); "
                              "cnn_encoder_dim must be 128 to start from CoTracker3")
    verifier.cnn_encoder.load_state_dict(state, strict=True)
    return path


def new_verifier_for_training(config: VerifierConfig | None = None,
                              cotracker3_checkpoint: str | Path | None = None) -> Verifier:
    """A verifier to train from scratch: random weights except the CNN encoder, which starts from CoTracker3's."""
    verifier = Verifier(config)
    load_cotracker3_encoder(verifier, cotracker3_checkpoint)
    return verifier.train()
