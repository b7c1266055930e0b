"""Shared fixtures: the reference's golden outputs and a model loaded with the golden weights in float64."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from trackon2.model.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The suite runs on one intra-op thread, fixtures included (the tiny models are faster so, and OpenMP threads
    spinning on a busy shared machine slow a run several-fold); the process's count is restored at the end."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def restore_torch_globals():
    """Every test leaves torch's thread count, default dtype and grad mode as it found them."""
    threads, dtype, grad = torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled()
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)


@pytest.fixture(scope="session")
def golden() -> dict:
    return torch.load(FIXTURES / "golden_v2_small.pt", weights_only=True)


@pytest.fixture(scope="session")
def golden_config(golden):
    from trackon2.model.yaml_schema import config_from_mapping

    return config_from_mapping({**golden["config"], "backbone_config": golden["backbone_config"]})


@pytest.fixture(scope="session")
def golden_model(golden, golden_config):
    from trackon2.model.checkpoint import load_state_dict_strict
    from trackon2.model.trackon import TrackOn2

    model = TrackOn2(ModelConfig.from_namespace(golden_config)).double().eval()
    load_state_dict_strict(model, golden["state_dict"])
    return model


@pytest.fixture(scope="session")
def golden_checkpoint(golden, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "golden.pt"
    torch.save({"state_dict": golden["state_dict"]}, path)
    return path


@pytest.fixture()
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
