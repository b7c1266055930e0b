"""Dynamic Replica and PointOdyssey evaluation readers: round trips, track filtering and format errors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from dataset.dynamic_replica import DynamicReplicaDataset
from dataset.errors import DatasetFormatError
from dataset.point_odyssey import PointOdysseyDataset
from dataset.synthetic import generate_clip, write_dynamic_replica, write_point_odyssey

CLIP = dict(num_frames=16, height=64, width=80, num_points=40)


def column_of(tracks: np.ndarray, track: np.ndarray) -> int:
    match = np.flatnonzero(np.all(np.abs(tracks - track[:, None]) < 1e-4, axis=(0, 2)))
    assert len(match) == 1
    return int(match[0])


def test_dynamic_replica_round_trip(tmp_path) -> None:
    write_dynamic_replica(tmp_path, 2, seed=3, **CLIP)
    dataset = DynamicReplicaDataset(tmp_path, split="test", traj_per_sample=1000)
    assert len(dataset) == 2
    video, trajs, visibility = dataset[1]
    clip = generate_clip(4, **CLIP)
    assert video.shape == (16, 3, 64, 80) and video.dtype == torch.float32
    assert np.array_equal(video.permute(0, 2, 3, 1).numpy(), clip.video.astype(np.float32))
    x, y = clip.tracks[..., 0], clip.tracks[..., 1]
    in_image = clip.visibility & (x >= 0) & (x <= 79) & (y >= 0) & (y <= 63)
    assert trajs.shape[1] == int((in_image.sum(0) > 10).sum())
    for n in range(trajs.shape[1]):
        column = column_of(clip.tracks, trajs[:, n].numpy())
        assert np.array_equal(visibility[:, n].numpy(), in_image[:, column])


def test_dynamic_replica_sampling_options(tmp_path) -> None:
    write_dynamic_replica(tmp_path, 1, **CLIP)
    assert [len(s) for s in DynamicReplicaDataset(tmp_path, "test", sample_len=6).sample_list] == [6, 6, 4]
    assert len(DynamicReplicaDataset(tmp_path, "test", sample_len=6, only_first_n_samples=1)) == 1
    dataset = DynamicReplicaDataset(tmp_path, "test", traj_per_sample=8, crop_size=(48, 64))
    video, trajs, _ = dataset[0]
    assert video.shape[2:] == (48, 64) and trajs.shape[1] <= 8
    assert torch.equal(dataset[0][1], trajs)


def test_dynamic_replica_errors(tmp_path) -> None:
    with pytest.raises(DatasetFormatError, match="does not exist"):
        DynamicReplicaDataset(tmp_path, "test")
    write_dynamic_replica(tmp_path, 1, num_frames=3, height=16, width=16, num_points=4)
    jgz = tmp_path / "test" / "frame_annotations_test.jgz"
    with pytest.raises(DatasetFormatError, match="valid: Dynamic Replica split folder does not exist"):
        DynamicReplicaDataset(tmp_path, "valid")
    (tmp_path / "test" / "synthetic_000" / "trajectories" / "000001.pth").write_bytes(b"broken")
    with pytest.raises(DatasetFormatError, match="000001.pth: not a readable torch file"):
        DynamicReplicaDataset(tmp_path, "test")[0]
    torch.save({"img": torch.zeros(16, 16, 3, dtype=torch.uint8)},
               tmp_path / "test" / "synthetic_000" / "trajectories" / "000001.pth")
    with pytest.raises(DatasetFormatError, match="missing key"):
        DynamicReplicaDataset(tmp_path, "test")[0]
    with gzip.open(jgz, "wt") as handle:
        json.dump({"not": "a list"}, handle)
    with pytest.raises(DatasetFormatError, match="expected a JSON list"):
        DynamicReplicaDataset(tmp_path, "test")
    jgz.write_bytes(b"plain bytes")
    with pytest.raises(DatasetFormatError, match="not a gzipped JSON"):
        DynamicReplicaDataset(tmp_path, "test")


def expected_po_tracks(clip, height: int, width: int) -> np.ndarray:
    x, y = clip.tracks[..., 0], clip.tracks[..., 1]
    good = clip.visibility & (x >= 1) & (x <= width - 2) & (y >= 1) & (y <= height - 2)
    return np.flatnonzero(good[0] & (good.sum(0) >= 8))


def test_point_odyssey_round_trip(tmp_path) -> None:
    write_point_odyssey(tmp_path, 2, seed=5, **CLIP)
    dataset = PointOdysseyDataset(tmp_path, "test", 1000)
    assert len(dataset) == 2
    sample = dataset[0]
    clip = generate_clip(5, **CLIP)
    assert sample["seq"].endswith("seq_000") and len(sample["rgb_paths"]) == 16
    kept = expected_po_tracks(clip, 64, 80)
    assert sample["trajs"].shape == (16, len(kept), 2) and sample["visibs"].dtype == torch.float32
    expected = np.clip(clip.tracks[:, kept], -32, [112, 96])
    assert np.allclose(sample["trajs"].numpy(), expected, atol=1e-4)
    assert torch.all(sample["valids"][0] == 1) and torch.all(sample["visibs"][0] == 1)
    few = PointOdysseyDataset(tmp_path, "test", 5)[0]
    picked = np.linspace(0, len(kept) - 1, 5).astype(int)
    assert np.allclose(few["trajs"].numpy(), expected[:, picked], atol=1e-4)


def test_point_odyssey_legacy_codes_and_invalid_values(tmp_path) -> None:
    write_point_odyssey(tmp_path, 1, num_frames=10, height=32, width=32, num_points=3)
    seq = tmp_path / "test" / "seq_000"
    trajs = np.tile(np.array([[10.0, 10.0], [20.0, 20.0], [15.0, 15.0]], np.float32), (10, 1, 1))
    codes = np.ones((10, 3), np.int64)
    codes[3, 0] = 2  # invalid in one frame: still kept
    trajs[0, 1] = np.inf  # invalid at frame 0: dropped
    codes[:, 2] = 0
    codes[0:5, 2] = 1  # visible in only 5 frames: dropped
    np.savez(seq / "anno.npz", trajs_2d=trajs, visibilities=codes)
    sample = PointOdysseyDataset(tmp_path, "test", 8)[0]
    assert sample["trajs"].shape == (10, 1, 2)
    assert sample["valids"][3, 0] == 0 and sample["visibs"][3, 0] == 0 and sample["visibs"][4, 0] == 1


@pytest.mark.parametrize("breakage, message", [
    ("no_anno", "annotation file does not exist"),
    ("bad_keys", "needs 'trajs_2d'"),
    ("bad_shape", "shapes do not match"),
    ("missing_frame", "missing \\['rgb_00003.jpg'\\]"),
    ("nothing_left", "no track survives"),
])
def test_point_odyssey_errors(tmp_path, breakage, message) -> None:
    write_point_odyssey(tmp_path, 1, num_frames=8, height=32, width=32, num_points=4)
    seq = tmp_path / "test" / "seq_000"
    if breakage == "no_anno":
        (seq / "anno.npz").unlink()
    elif breakage == "bad_keys":
        np.savez(seq / "anno.npz", coords=np.zeros((8, 4, 2)))
    elif breakage == "bad_shape":
        np.savez(seq / "anno.npz", trajs_2d=np.zeros((8, 4, 2)), visibs=np.zeros((8, 3), bool))
    elif breakage == "missing_frame":
        (seq / "rgbs" / "rgb_00003.jpg").rename(seq / "rgbs" / "rgb_00009.jpg")
    elif breakage == "nothing_left":
        np.savez(seq / "anno.npz", trajs_2d=np.zeros((8, 4, 2)), visibs=np.zeros((8, 4), bool))
    with pytest.raises(DatasetFormatError, match=message) as info:
        PointOdysseyDataset(tmp_path, "test", 8)[0]
    assert str(seq) in str(info.value)
    with pytest.raises(DatasetFormatError, match="does not exist"):
        PointOdysseyDataset(tmp_path, "train")
