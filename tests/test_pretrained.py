"""One-line loading of released variants from a Hugging Face cache, offline, through Predictor.from_pretrained and
torch.hub (source="local"), and the message when a file is missing from the cache.

The cache is built in a temporary folder in the hub's real layout (models--org--name/snapshots/<rev>/, refs/main)
with random weights under the real file names: tiny trackers as the checkpoints and tiny ViTs saved with
save_pretrained under the real ViT repository ids. The loading runs in a subprocess, since huggingface_hub reads
HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from tests.tiny_model import TINY_DINOV3, tiny_config, tiny_model_config
from trackon2.model.registry import VARIANTS, get_variant
from trackon2.model.trackon import TrackOn2
from trackon2.video.files import write_video

REVISION = "0123456789abcdef0123456789abcdef01234567"
VIT_PREFIX = "backbone.vit_encoder."
# The tiny architecture the variants are overridden with (the ViT's own config comes from the cache's config.json).
TINY_ARCH = {key: value for key, value in vars(tiny_config()).items()
             if key in ("input_size", "M", "D", "K", "decoder_layer_num", "predicton_head_layer_num",
                        "rerank_layer_num", "vit_upsample_factor", "grad_checkpoint")}


def _snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` at REVISION, with refs/main pointing to it."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(REVISION)
    snapshot = repo_dir / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _release(cache: Path, variant_name: str, with_vit: bool, **config: object) -> dict[str, torch.Tensor]:
    """A random tiny tracker saved as the variant's checkpoint (without the ViT, as the released files are),
    and its ViT saved under the variant's ViT repository id if ``with_vit``. Returns the ViT's weights."""
    variant = get_variant(variant_name)
    model = TrackOn2(tiny_model_config(vit_backbone=variant.config.vit_backbone, **config))
    tracker = {k: v for k, v in model.state_dict().items() if not k.startswith(VIT_PREFIX + variant.vit.family)}
    torch.save({"model": tracker}, _snapshot(cache, variant.checkpoint_repo) / variant.checkpoint_file)
    if with_vit:
        model.backbone.vit_encoder.vit.save_pretrained(_snapshot(cache, variant.vit.hub_id))
    return model.backbone.vit_encoder.vit.state_dict()


LOADER = """
import json, sys, torch
from trackon2.model.checkpoint import CheckpointError, read_checkpoint
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.vit import BackboneUnavailableError

cache, repo_dir, arch = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
options = dict(M_i=6, delta_v=0.5, support_grid_size=2, dtype=torch.float64, config_overrides=arch)
loaded = Predictor.from_pretrained("trackon2-dinov2", **options)
hub = torch.hub.load(repo_dir, "trackon2_dinov2", source="local", **options)
state = loaded.model.state_dict()
released = read_checkpoint(f"{cache}/models--gorkaydemir--track_on2/snapshots/{sys.argv[4]}/"
                           "trackon2_dinov2_checkpoint.pt")["model"]
vit = torch.load(sys.argv[5], weights_only=True)
video = torch.rand(1, 3, 3, 64, 96) * 255
trajectory, visibility = loaded(video, torch.tensor([[[0.0, 40.0, 30.0], [1.0, 10.0, 50.0]]]))
extended = loaded.model.time_embedding(loaded.memory_size).detach()
result = {
    "tracker_equal": all(torch.equal(state[k], v.double()) for k, v in released.items() if k != "t_embedding"),
    "tracker_keys": len(released),
    "vit_equal": all(torch.equal(loaded.model.backbone.vit_encoder.vit.state_dict()[k], v.double())
                     for k, v in vit.items()),
    "vit_keys": len(vit),
    "now_row_kept": torch.equal(extended[:, -1], released["t_embedding"][:, -1].double()),
    "t_embedding_rows": extended.shape[1],
    "dtype": str(state["t_embedding"].dtype),
    "delta_v": loaded.delta_v,
    "support_grid_size": loaded.support_grid_size,
    "hub_equal": all(torch.equal(v, hub.model.state_dict()[k]) for k, v in state.items()),
    "trajectory_shape": list(trajectory.shape),
    "finite": bool(torch.isfinite(trajectory).all()),
}
import numpy, yaml
from trackon2 import demo
with open(f"{cache}/../tiny.yaml", "w") as handle:
    yaml.safe_dump({**arch, "input_size": list(arch["input_size"]), "vit_backbone": "dinov2_s", "M_i": 6}, handle)
result["demo_exit"] = demo.main(["--checkpoint", "trackon2-dinov2", "--config", f"{cache}/../tiny.yaml",
                                 "--video", sys.argv[6], "--max_frames", "2", "--grid_size", "2", "--no_video",
                                 "--output_dir", f"{cache}/../demo", "--support_grid_size", "0"])
result["demo_tracks_shape"] = list(numpy.load(f"{cache}/../demo/tracks.npz")["tracks"].shape)
for name, error in (("trackon2-dinov3", CheckpointError), ("track-on-r", BackboneUnavailableError)):
    try:
        Predictor.from_pretrained(name, config_overrides=arch)
        result[name] = None
    except error as err:
        result[name] = str(err)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def offline_load(tmp_path_factory) -> dict:
    """Build the cache (trackon2-dinov2 complete, track-on-r without its ViT, trackon2-dinov3 absent) and load."""
    tmp = tmp_path_factory.mktemp("hub")
    cache = tmp / "hub"
    torch.manual_seed(0)
    torch.save(_release(cache, "trackon2-dinov2", with_vit=True), tmp / "vit.pt")
    _release(cache, "track-on-r", with_vit=False, backbone_config=dict(TINY_DINOV3))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp / "home"),
               PYTHONPATH=str(ROOT), TORCH_HOME=str(tmp / "torch"))
    write_video(tmp / "clip.mp4", [np.full((72, 96, 3), 60 * i, dtype=np.uint8) for i in range(3)], 8)
    result = subprocess.run([sys.executable, "-c", LOADER, str(cache), str(ROOT), json.dumps(TINY_ARCH), REVISION,
                             str(tmp / "vit.pt"), str(tmp / "clip.mp4")],
                            cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_from_pretrained_loads_checkpoint_and_vit_from_the_offline_cache(offline_load):
    assert offline_load["tracker_keys"] > 100 and offline_load["tracker_equal"]
    assert offline_load["vit_keys"] > 100 and offline_load["vit_equal"]
    assert offline_load["t_embedding_rows"] == 7 and offline_load["now_row_kept"]  # memory extended to M_i 6
    assert offline_load["dtype"] == "torch.float64"
    assert offline_load["delta_v"] == 0.5 and offline_load["support_grid_size"] == 2
    assert offline_load["trajectory_shape"] == [1, 3, 2, 2] and offline_load["finite"]


def test_demo_takes_a_variant_name_offline(offline_load):
    assert offline_load["demo_exit"] == 0 and offline_load["demo_tracks_shape"] == [2, 4, 2]


def test_torch_hub_local_gives_the_same_model(offline_load):
    assert offline_load["hub_equal"]


def test_missing_checkpoint_is_one_line_naming_variant_file_and_fix(offline_load):
    message = offline_load["trackon2-dinov3"]
    assert message is not None and "\n" not in message
    assert message.startswith("trackon2-dinov3:") and "trackon2_dinov3_checkpoint.pt" in message
    assert "gorkaydemir/track_on2" in message and "hf download" in message


def test_missing_vit_is_one_line_naming_variant_vit_and_fix(offline_load):
    message = offline_load["track-on-r"]
    assert message is not None and "\n" not in message
    assert message.startswith("track-on-r:") and "facebook/dinov3-vits16plus-pretrain-lvd1689m" in message
    assert "hf download" in message and "gated" in message


def test_hubconf_has_one_entry_point_per_variant_and_importable_dependencies():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entry_points = {name for name, value in vars(hubconf).items()
                    if inspect.isfunction(value) and not name.startswith("_") and value.__module__ == "hubconf"}
    assert entry_points == {variant.hub_entry_point for variant in VARIANTS.values()}
    assert all(importlib.util.find_spec(module) is not None for module in hubconf.dependencies)
