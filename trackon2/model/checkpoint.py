"""Loading Track-On2 checkpoints: the released files, our own training checkpoints, and their ViT naming variants.

The released files hold the tracker without the frozen ViT (which comes from the hub). Our loader accepts a raw
state dict or one nested under a known key, strips DDP's ``module.`` prefix, translates ViT parameter names
between transformers 4 and 5, and refuses anything that does not fit the model exactly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from trackon2.model.errors import one_line
from trackon2.model.hub import hub_offline, hub_unreachable_reason, unreachable_message
from trackon2.model.registry import get_variant, variant_names

# Released checkpoint file of every variant name and alias the tools accept (from the registry).
HUB_FILES = {name: get_variant(name).checkpoint_file for name in variant_names()}
NESTED_KEYS = ("state_dict", "model", "model_state", "ema_state_dict")
VIT_PREFIXES = ("backbone.vit_encoder.dinov2.", "backbone.vit_encoder.dinov3.")

# (transformers 4 name, transformers 5 name) fragments of the ViT parameters.
_VIT_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)
_DINOV3_LAYERS_V4 = re.compile(r"^(backbone\.vit_encoder\.dinov3\.)layer\.")
_DINOV3_LAYERS_V5 = re.compile(r"^(backbone\.vit_encoder\.dinov3\.)model\.layer\.")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not match the model."""


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling numpy float/int scalars needs (the reference's trainer saves its best scores as numpy
    float64), under numpy 1 and numpy 2 module names."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtype_classes = [type(np.dtype(kind)) for kind in (np.float64, np.float32, np.int64)]
    return [np.dtype, *dtype_classes, (scalar, "numpy.core.multiarray.scalar"),
            (scalar, "numpy._core.multiarray.scalar")]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file on the CPU (tensors, plain values and numpy scalars only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint file (.pt / .pth)")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = one_line(err)
        reason = reason if len(reason) <= 200 else reason[:200] + "..."
        raise CheckpointError(f"could not read checkpoint {path}: not a PyTorch checkpoint of tensors saved with "
                              f"torch.save ({reason})") from err


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's state dict from a raw or nested checkpoint, without DDP's ``module.`` prefix."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"a checkpoint must be a mapping, got {type(checkpoint).__name__}")
    for key in NESTED_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    state = {}
    for name, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {name!r} is not a tensor ({type(value).__name__})")
        state[name[len("module."):] if name.startswith("module.") else name] = value
    return state


def _vit_name_variants(name: str) -> list[str]:
    """Other spellings of a ViT parameter name (transformers 4 <-> 5)."""
    variants = []
    for old, new in _VIT_RENAMES:
        if old in name:
            variants.append(name.replace(old, new))
        if new in name:
            variants.append(name.replace(new, old))
    more = []
    for candidate in [name, *variants]:
        if _DINOV3_LAYERS_V5.match(candidate):
            more.append(_DINOV3_LAYERS_V5.sub(r"\1layer.", candidate))
        elif _DINOV3_LAYERS_V4.match(candidate):
            more.append(_DINOV3_LAYERS_V4.sub(r"\1model.layer.", candidate))
    return variants + more


def match_vit_names(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Rename ViT entries written by another transformers version to the installed version's names."""
    renamed = {}
    for name, value in state.items():
        if name not in model_keys and name.startswith(VIT_PREFIXES):
            name = next((v for v in _vit_name_variants(name) if v in model_keys), name)
        renamed[name] = value
    return renamed


def state_dict_mismatch(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                        optional_prefixes: tuple[str, ...] = ()) -> list[str]:
    """What keeps ``state`` from loading strictly into a model whose state dict is ``expected`` (keys under
    ``optional_prefixes`` may be missing), one phrase per kind of problem; empty when it fits."""
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(optional_prefixes))
    wrong_shape = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                         for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:5]}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatch(es), e.g. {wrong_shape[:3]}")
    return problems


def load_state_dict_strict(model: nn.Module, checkpoint: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load weights, allowing only the frozen ViT to be missing; anything else that does not fit is an error."""
    expected = model.state_dict()
    state = match_vit_names(extract_state_dict(checkpoint), set(expected))
    problems = state_dict_mismatch(state, expected, VIT_PREFIXES)
    if problems:
        raise CheckpointError(
            f"{source} does not match the model built from this config ({'; '.join(problems)}). "
            "Check that the config (vit_backbone, D, M, K, layer counts, input_size) is the one it was trained with."
        )
    non_finite = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if non_finite:
        raise CheckpointError(f"{source} holds NaN or infinite weights in {len(non_finite)} tensor(s), e.g. "
                              f"{non_finite[:3]}: the run that wrote it diverged; use an earlier checkpoint")
    model.load_state_dict(state, strict=False)


def download_released_checkpoint(name: str) -> Path:
    """A released checkpoint (variant name or alias) from the Hugging Face cache, downloading it if needed."""
    if name not in HUB_FILES:
        raise CheckpointError(f"no released checkpoint for {name!r}; expected one of {', '.join(HUB_FILES)}")
    variant = get_variant(name)
    from huggingface_hub import hf_hub_download

    unreachable = None if hub_offline() else hub_unreachable_reason()
    try:
        return Path(hf_hub_download(variant.checkpoint_repo, variant.checkpoint_file,
                                    local_files_only=unreachable is not None))
    except Exception as err:
        if unreachable is not None:
            raise CheckpointError(f"{variant.name}: " + unreachable_message(
                f"{variant.checkpoint_repo}/{variant.checkpoint_file}", unreachable)) from None
        raise CheckpointError(
            f"{variant.name}: could not get {variant.checkpoint_file} from the hub repository "
            f"{variant.checkpoint_repo} or the local cache ({one_line(err)}). Fetch it once with network access "
            f"(`hf download {variant.checkpoint_repo} {variant.checkpoint_file}`; offline runs then find it with "
            "HF_HUB_OFFLINE=1), download it by hand and pass its path instead, or run on random weights with "
            "--checkpoint none --config config/tiny.yaml."
        ) from err
