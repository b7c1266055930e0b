"""Every evaluation reader gives the same ``EvalSample`` (types, shapes, units), built from its own items."""

from __future__ import annotations

import pytest
import torch

from trackon2.dataset.eval_sample import EvalSample
from trackon2.dataset.synthetic import write_dynamic_replica, write_point_odyssey, write_tapvid_davis
from trackon2.evaluation.datasets import BENCHMARKS, build_dataset
from trackon2.runtime.memory_size import inference_memory_size

CLIP = dict(num_frames=12, height=48, width=64, num_points=16)


def _written(name: str, root) -> str:
    if name == "davis":
        return str(write_tapvid_davis(root / "davis.pkl", 2, seed=1, **CLIP))
    if name == "point_odyssey":
        write_point_odyssey(root, 2, seed=1, **CLIP)
        return str(root / "test")
    write_dynamic_replica(root, 2, seed=1, split="valid", **CLIP)
    return str(root)


@pytest.mark.parametrize("name", ["davis", "point_odyssey", "dynamic_replica"])
def test_every_reader_gives_the_documented_sample(name, tmp_path) -> None:
    dataset = build_dataset(name, _written(name, tmp_path))
    sample = dataset.sample(1)
    assert isinstance(sample, EvalSample) and sample.name == dataset.name(1)
    frames, channels, height, width = sample.video.shape
    num = sample.queries.shape[0]
    assert channels == 3 and sample.video.dtype == torch.float32 and num > 0
    assert 0 <= float(sample.video.min()) and float(sample.video.max()) <= 255
    assert sample.queries.shape == (num, 3) and sample.queries.dtype == torch.float32
    assert sample.tracks.shape == (frames, num, 2) and sample.tracks.dtype == torch.float32
    assert sample.visible.shape == sample.valid.shape == (frames, num)
    assert sample.visible.dtype == sample.valid.dtype == torch.bool
    # Each query is its track's point at its start frame, in the video's pixels.
    times = sample.queries[:, 0].long()
    assert torch.equal(sample.queries[:, 1:], sample.tracks[times, torch.arange(num)])
    if name != "dynamic_replica":  # Dynamic Replica queries every track at frame 0, visible or not
        assert bool(sample.visible[times, torch.arange(num)].all())
    if name == "point_odyssey":
        assert (height, width) == (384, 512)


def test_per_benchmark_rules() -> None:
    assert inference_memory_size(72, benchmark="davis") == 24
    assert all(inference_memory_size(72, benchmark=name) == 72 for name in BENCHMARKS if name != "davis")
    assert [name for name, rules in BENCHMARKS.items() if rules.allow_outside_queries] == ["dynamic_replica",
                                                                                              "ego_points"]
    assert {rules.query_mode for name, rules in BENCHMARKS.items() if name not in ("point_odyssey",
                                                                                     "dynamic_replica", "ego_points")} == {"first"}
