"""Dynamic Replica reader: the reference's frame, camera, track selection and visibility rules on small files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trackon2.dataset.dynamic_replica import DynamicReplicaDataset, uniform_track_indices
from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.synthetic import generate_clip, write_dynamic_replica

CLIP = dict(num_frames=16, height=64, width=80, num_points=40)


def write_frame(split_dir: Path, sequence: str, number: int, img: np.ndarray, traj: np.ndarray,
                visible: np.ndarray, camera: str = "left", size: list[int] | None = None) -> dict[str, Any]:
    """Save one left frame's torch file (right frames have none) and return its annotation entry."""
    path = f"{sequence}/trajectories/{number:06d}.pth"
    if camera == "left":
        (split_dir / path).parent.mkdir(parents=True, exist_ok=True)
        depth = np.ones((len(traj), 1), dtype=traj.dtype)
        torch.save({"img": torch.from_numpy(img), "traj_2d": torch.from_numpy(np.concatenate([traj, depth], 1)),
                    "verts_inds_vis": torch.from_numpy(visible)}, split_dir / path)
    return {
        "sequence_name": sequence,
        "frame_number": number,
        "frame_timestamp": number / 30.0,
        "image": {"path": f"{sequence}/images/{camera}_{number:06d}.png", "size": size or list(img.shape[:2])},
        "camera_name": camera,
        "trajectories": {"path": path} if camera == "left" else None,
    }


def write_annotations(split_dir: Path, entries: list[dict[str, Any]], split: str = "test") -> None:
    with gzip.open(split_dir / f"frame_annotations_{split}.jgz", "wt", encoding="utf8") as handle:
        json.dump(entries, handle)


def write_sequence(split_dir: Path, trajs: np.ndarray, visible: np.ndarray, height: int, width: int,
                   size: list[int] | None = None) -> None:
    """One left-camera sequence 'seq' of constant grey frames with the given (T, N, 2) tracks."""
    img = np.full((height, width, 3), 7, dtype=np.uint8)
    entries = [write_frame(split_dir, "seq", t, img, trajs[t], visible[t], size=size) for t in range(len(trajs))]
    write_annotations(split_dir, entries)


def test_uniform_track_indices() -> None:
    assert np.array_equal(uniform_track_indices(1000, 256), np.arange(0, 768, 3))
    assert np.array_equal(uniform_track_indices(600, 256), np.arange(0, 512, 2))
    assert np.array_equal(uniform_track_indices(511, 256), np.arange(256))
    assert np.array_equal(uniform_track_indices(256, 256), np.arange(256))
    assert np.array_equal(uniform_track_indices(100, 256), np.arange(100))


def test_dynamic_replica_keeps_every_third_of_1000_tracks(tmp_path) -> None:
    frames, num = 12, 1000
    trajs = np.zeros((frames, num, 2), np.float32)
    trajs[..., 0] = np.arange(num, dtype=np.float32) / 200  # x identifies the track, inside a 6-wide frame
    trajs[..., 1] = np.arange(frames, dtype=np.float32)[:, None] / 4
    write_sequence(tmp_path / "test", trajs, np.ones((frames, num), bool), height=4, width=6)
    video, picked, visibility = DynamicReplicaDataset(tmp_path, "test")[0]
    assert video.shape == (12, 3, 4, 6) and video.dtype == torch.float32 and torch.all(video == 7)
    assert torch.equal(picked, torch.from_numpy(trajs[:, 0:768:3]))
    assert visibility.dtype == torch.bool and visibility.shape == (12, 256) and torch.all(visibility)


def test_dynamic_replica_frame_order_cameras_and_samples(tmp_path) -> None:
    split_dir = tmp_path / "test"
    traj, visible = np.zeros((1, 2), np.float32), np.ones(1, bool)

    def entry(sequence: str, number: int, camera: str = "left") -> dict[str, Any]:
        value = (50 if sequence == "b" else 0) + number  # identifies the frame in its pixels
        return write_frame(split_dir, sequence, number, np.full((2, 3, 3), value, np.uint8), traj, visible, camera)

    # Sequence b appears first; its frames are listed out of order and mixed with right-camera entries.
    entries = [entry("b", 2), entry("b", 2, "right"), entry("a", 0), entry("b", 0), entry("b", 1, "right"),
               entry("b", 1), entry("a", 1), entry("b", 3), entry("a", 2), entry("b", 4)]
    no_camera = entry("c", 0)
    del no_camera["camera_name"]  # not a left frame: sequence c has no sample
    write_annotations(split_dir, entries + [no_camera])

    def first_pixels(dataset: DynamicReplicaDataset) -> list[list[int]]:
        return [dataset[i][0][:, 0, 0, 0].int().tolist() for i in range(len(dataset))]

    assert first_pixels(DynamicReplicaDataset(tmp_path, "test")) == [[52, 50, 51, 53, 54], [0, 1, 2]]
    assert first_pixels(DynamicReplicaDataset(tmp_path, "test", sample_len=2)) == [[52, 50], [51, 53], [54], [0, 1], [2]]
    assert first_pixels(DynamicReplicaDataset(tmp_path, "test", sample_len=2, only_first_n_samples=1)) == [[52, 50], [0, 1]]


def visibility_case() -> tuple[np.ndarray, np.ndarray]:
    """12 frames of 8 tracks in an (H, W) = (8, 10) frame; see the expectations in the tests below."""
    trajs = np.full((12, 8, 2), 4.0, np.float32)
    visible = np.ones((12, 8), bool)
    trajs[:, 0] = [0.0, 0.0]  # on the top-left bound: visible
    trajs[:, 1] = [9.0, 7.0]  # on the bottom-right bound (W-1, H-1): visible
    trajs[:, 2, 0] = 9.001  # right of W-1: never visible, dropped
    trajs[:, 3, 0] = -0.001  # left of 0: dropped
    trajs[:, 4, 1] = 7.001  # below H-1: dropped
    visible[:2, 5] = False  # visible in 10 frames: dropped
    visible[:1, 6] = False  # visible in 11 frames: kept
    trajs[5, 7, 0] = 20.0  # outside in one frame: kept, invisible there
    return trajs, visible


def test_dynamic_replica_visibility_rules(tmp_path) -> None:
    trajs, visible = visibility_case()
    write_sequence(tmp_path / "test", trajs, visible, height=8, width=10)
    _, kept, visibility = DynamicReplicaDataset(tmp_path, "test")[0]
    assert torch.equal(kept, torch.from_numpy(trajs[:, [0, 1, 6, 7]]))
    expected = np.ones((12, 4), bool)
    expected[0, 2] = False
    expected[5, 3] = False
    assert np.array_equal(visibility.numpy(), expected)


def test_dynamic_replica_bounds_come_from_the_annotation_or_the_crop(tmp_path) -> None:
    trajs, visible = visibility_case()
    write_sequence(tmp_path / "test", trajs, visible, height=8, width=10)
    # A crop larger than the frame crops nothing, but its size bounds the visible area: x = 9.001 and x = 20 count.
    video, kept, visibility = DynamicReplicaDataset(tmp_path, "test", crop_size=(20, 30))[0]
    assert video.shape == (12, 3, 8, 10)
    assert torch.equal(kept, torch.from_numpy(trajs[:, [0, 1, 2, 4, 6, 7]]))
    assert torch.all(visibility[:, -1])
    # A (6, 8) crop starts at (y0, x0) = (1, 1): track 0 moves to (-1, -1) and track 1 to (8, 6), both outside.
    video, kept, _ = DynamicReplicaDataset(tmp_path, "test", crop_size=(6, 8))[0]
    assert video.shape == (12, 3, 6, 8)
    assert torch.equal(kept, torch.from_numpy(trajs[:, [6, 7]] - 1))


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
    kept = in_image.sum(0) > 10
    assert kept.sum() > 0
    assert np.array_equal(trajs.numpy(), clip.tracks[:, kept])
    assert np.array_equal(visibility.numpy(), in_image[:, kept])


def test_dynamic_replica_sampling_options(tmp_path) -> None:
    write_dynamic_replica(tmp_path, 1, **CLIP)
    assert [len(s) for s in DynamicReplicaDataset(tmp_path, "test", sample_len=6).sample_list] == [6, 6, 4]
    assert len(DynamicReplicaDataset(tmp_path, "test", sample_len=6, only_first_n_samples=1)) == 1
    video, trajs, visibility = DynamicReplicaDataset(tmp_path, "test", traj_per_sample=8, crop_size=(48, 64))[0]
    assert video.shape[2:] == (48, 64)
    clip = generate_clip(0, **CLIP)
    picked = clip.tracks[:, 0:40:5] - 8  # every 5th of 40 tracks; the crop starts at (8, 8)
    x, y = picked[..., 0], picked[..., 1]
    in_crop = clip.visibility[:, 0:40:5] & (x >= 0) & (x <= 63) & (y >= 0) & (y <= 47)
    kept = in_crop.sum(0) > 10
    assert np.array_equal(trajs.numpy(), picked[:, kept])
    assert np.array_equal(visibility.numpy(), in_crop[:, kept])


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


def test_dynamic_replica_image_size_must_match_the_annotation(tmp_path) -> None:
    trajs, visible = visibility_case()
    write_sequence(tmp_path / "test", trajs, visible, height=8, width=10, size=[10, 8])
    with pytest.raises(DatasetFormatError, match=r"an image is \(8, 10\), the annotation says \(10, 8\)"):
        DynamicReplicaDataset(tmp_path, "test")[0]
    entry = write_frame(tmp_path / "test", "seq", 0, np.zeros((8, 10, 3), np.uint8), trajs[0], visible[0])
    del entry["image"]["size"]
    write_annotations(tmp_path / "test", [entry])
    with pytest.raises(DatasetFormatError, match="has no image size"):
        DynamicReplicaDataset(tmp_path, "test")
