"""Without network or cache, loading pretrained weights fails with a message that says what to do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = """
from trackon2.model.vit import build_vit, BackboneUnavailableError
from trackon2.model.checkpoint import download_released_checkpoint, CheckpointError
try:
    build_vit("dinov3_s_plus")
except BackboneUnavailableError as err:
    print("VIT:", err)
try:
    download_released_checkpoint("dinov2")
except CheckpointError as err:
    print("CKPT:", err)
"""


@pytest.mark.slow
def test_offline_without_cache_gives_actionable_errors(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    vit_line = next(line for line in result.stdout.splitlines() if line.startswith("VIT:"))
    assert "facebook/dinov3-vits16plus-pretrain-lvd1689m" in vit_line and "gated" in vit_line
    assert "backbone_config" in vit_line
    ckpt_line = next(line for line in result.stdout.splitlines() if line.startswith("CKPT:"))
    assert "trackon2_dinov2_checkpoint.pt" in ckpt_line and "gorkaydemir/track_on2" in ckpt_line
