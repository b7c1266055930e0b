"""PointOdyssey reader: the reference's visibility codes, track rules, sequence listing and OpenCV frame decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.image_ops import resize_bilinear
from trackon2.dataset.point_odyssey import PointOdysseyDataset, load_resized_video
from trackon2.dataset.synthetic import generate_clip, write_point_odyssey

CLIP = dict(num_frames=16, height=64, width=80, num_points=40)


def write_sequence(split_dir: Path, name: str, trajs: np.ndarray, codes: np.ndarray, num_frames: int | None = None,
                   **extra: np.ndarray) -> Path:
    """A sequence folder with tiny grey JPEG frames (one per annotated frame unless ``num_frames``)."""
    seq = split_dir / name
    (seq / "rgbs").mkdir(parents=True)
    for t in range(len(trajs) if num_frames is None else num_frames):
        cv2.imwrite(str(seq / "rgbs" / f"rgb_{t:05d}.jpg"), np.full((6, 8, 3), 128, np.uint8))
    np.savez(seq / "anno.npz", trajs_2d=trajs, visibs=codes, **extra)
    return seq


def test_point_odyssey_decodes_visibility_codes(tmp_path) -> None:
    trajs = np.tile(np.array([[100.0, 100.0], [200.0, 150.0]], np.float32), (10, 1, 1))
    codes = np.ones((10, 2), np.uint8)
    codes[3, 0] = 0  # occluded: not visible, valid
    codes[4, 0] = 2  # invalid: neither
    codes[6, 1] = 2
    # A 'valids' array in the file is ignored, as by the reference: validity comes from the codes.
    write_sequence(tmp_path / "test", "seq", trajs, codes, valids=np.zeros((10, 2), np.uint8))
    sample = PointOdysseyDataset(tmp_path / "test", "test", 8)[0]
    assert sample["visibs"].dtype == torch.float32 and sample["valids"].dtype == torch.float32
    assert np.array_equal(sample["visibs"].numpy(), (codes == 1).astype(np.float32))
    assert np.array_equal(sample["valids"].numpy(), (codes < 2).astype(np.float32))
    assert sample["trajs"].dtype == torch.float64 and np.array_equal(sample["trajs"].numpy(), trajs)


def track_rules_case() -> tuple[np.ndarray, np.ndarray]:
    """10 frames of 11 tracks; the rules are those of a 540x960 frame whatever the JPEGs' size."""
    trajs = np.tile(np.array([100.0, 100.0], np.float32), (10, 11, 1))
    codes = np.ones((10, 11), np.uint8)
    trajs[:, 1] = [958.0, 538.0]  # on the 1 px border bound (W-2, H-2): kept
    trajs[0, 2, 0] = 958.01  # outside the border at frame 0: dropped
    trajs[0, 3, 1] = 0.99  # likewise: dropped
    trajs[0, 4, 0] = np.inf  # invalid at frame 0: dropped
    trajs[5, 5, 1] = np.nan  # invalid at frame 5 only: kept, its coordinates there set to 0
    codes[7:, 6] = 0  # good in 7 frames: dropped
    codes[8:, 7] = 0  # good in 8 frames: kept
    trajs[4:, 8, 0] = 612.0  # a 512 px step: dropped
    trajs[4:, 9, 0] = 611.9  # a 511.9 px step: kept
    trajs[:, 10] = [900.0, 100.0]
    trajs[9, 10] = [1300.0, -100.0]  # far outside in the last frame: kept, clamped to (992, -32)
    return trajs, codes


def test_point_odyssey_track_rules(tmp_path) -> None:
    trajs, codes = track_rules_case()
    write_sequence(tmp_path / "test", "seq", trajs, codes)
    sample = PointOdysseyDataset(tmp_path / "test", "test", 256)[0]
    kept = [0, 1, 5, 7, 9, 10]
    expected = trajs[:, kept].astype(np.float64)
    expected[5, 2] = [100.0, 0.0]  # the NaN coordinate became 0
    expected[9, 5] = [992.0, -32.0]  # (1300, -100) clamped to the 540x960 frame + 32 px
    assert np.array_equal(sample["trajs"].numpy(), expected)
    good = sample["visibs"] * sample["valids"]
    assert good[:, 2].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert good[:, 3].tolist() == [1] * 8 + [0, 0]
    assert sample["valids"][:, 3].tolist() == [1] * 10 and sample["valids"][9, 5] == 0
    three = PointOdysseyDataset(tmp_path / "test", "test", 3)[0]
    assert np.array_equal(three["trajs"].numpy(), expected[:, [0, 2, 5]])  # linspace(0, 5, 3) -> 0, 2, 5


def test_point_odyssey_sequence_order_and_dataset_path(tmp_path) -> None:
    trajs, codes = track_rules_case()
    split_dir = tmp_path / "test"
    for name in ("seq", "seq-x", "a", ".hidden"):
        write_sequence(split_dir, name, trajs, codes)
    (split_dir / "notes.txt").write_text("not a sequence")
    (tmp_path / "train").mkdir()
    # The reference sorts glob("*/") strings: "seq-x/" < "seq/" because '-' < '/'.
    for location in (split_dir, tmp_path):
        dataset = PointOdysseyDataset(location, "test", 4)
        assert [Path(p).name for p in dataset.sequences] == ["a", "seq-x", "seq"]
        assert dataset[2]["seq"] == str(split_dir / "seq")
        assert dataset[2]["rgb_paths"] == [str(split_dir / "seq" / "rgbs" / f"rgb_{t:05d}.jpg") for t in range(10)]
    with pytest.raises(DatasetFormatError, match="train: contains no sequence folders"):
        PointOdysseyDataset(tmp_path / "train", "test")
    with pytest.raises(DatasetFormatError, match="test: is not a PointOdyssey sequence"):
        PointOdysseyDataset(tmp_path, "val")


def test_point_odyssey_frame_count_comes_from_rgbs(tmp_path) -> None:
    trajs, codes = track_rules_case()
    longer = np.concatenate([trajs, trajs[:2]]), np.concatenate([codes, codes[:2]])
    write_sequence(tmp_path / "test", "seq", *longer, num_frames=10)
    sample = PointOdysseyDataset(tmp_path / "test", "test", 256)[0]
    assert sample["trajs"].shape == (10, 6, 2) and len(sample["rgb_paths"]) == 10
    write_sequence(tmp_path / "short", "seq", trajs[:8], codes[:8], num_frames=10)
    with pytest.raises(DatasetFormatError, match="annotates 8 frames, but rgbs/ has 10"):
        PointOdysseyDataset(tmp_path / "short", "test", 8)[0]


def test_point_odyssey_frames_are_decoded_and_resized_by_opencv(tmp_path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for t in range(2):
        path = tmp_path / f"rgb_{t:05d}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
        paths.append(path)
    red = tmp_path / "red.jpg"
    cv2.imwrite(str(red), np.tile(np.array([0, 0, 255], np.uint8), (30, 40, 1)))  # BGR red
    video, original_size = load_resized_video(paths + [red], (384, 512))
    assert video.shape == (1, 3, 3, 384, 512) and video.dtype == torch.float32 and original_size == (30, 40)
    frames = video[0].permute(0, 2, 3, 1).numpy()
    for t, path in enumerate(paths):
        rgb = cv2.imread(str(path))[:, :, ::-1]
        assert np.array_equal(frames[t], cv2.resize(rgb, (512, 384), interpolation=cv2.INTER_LINEAR))
        as_float = np.clip(np.round(resize_bilinear(rgb.astype(np.float32), 384, 512)), 0, 255)
        assert 0 < np.count_nonzero(frames[t] != as_float)  # uint8 fixed-point differs from float arithmetic
        assert np.abs(frames[t] - as_float).max() == 1
    assert frames[2][..., 0].min() > 240 and frames[2][..., 2].max() < 15  # RGB order
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetFormatError, match="broken.jpg: OpenCV cannot read this image"):
        load_resized_video([tmp_path / "broken.jpg"], (384, 512))


def test_point_odyssey_round_trip(tmp_path) -> None:
    write_point_odyssey(tmp_path, 2, seed=5, **CLIP)
    dataset = PointOdysseyDataset(tmp_path, "test", 1000)
    assert len(dataset) == 2
    sample = dataset[0]
    clip = generate_clip(5, **CLIP)
    assert sample["seq"].endswith("seq_000") and len(sample["rgb_paths"]) == 16
    x, y = clip.tracks[..., 0], clip.tracks[..., 1]
    good = clip.visibility & (x >= 1) & (x <= 958) & (y >= 1) & (y <= 538)  # the 540x960 bounds
    kept = np.flatnonzero(good[0] & (good.sum(0) >= 8))
    assert sample["trajs"].shape == (16, len(kept), 2) and sample["visibs"].dtype == torch.float32
    expected = np.clip(clip.tracks[:, kept], -32, [992, 572])
    assert np.array_equal(sample["trajs"].numpy(), expected)
    assert np.array_equal(sample["visibs"].numpy() * sample["valids"].numpy(), good[:, kept])
    few = PointOdysseyDataset(tmp_path, "test", 5)[0]
    picked = np.linspace(0, len(kept) - 1, 5).astype(int)
    assert np.array_equal(few["trajs"].numpy(), expected[:, picked])


@pytest.mark.parametrize("breakage, message", [
    ("no_anno", "is not a PointOdyssey sequence"),
    ("bad_keys", r"needs 'trajs_2d' and 'visibs'; missing \['visibs'\]"),
    ("bad_shape", "shapes do not match"),
    ("missing_frame", "missing \\['rgb_00003.jpg'\\]"),
    ("nothing_left", "no track survives"),
    ("one_frame", "needs at least 2 frames"),
])
def test_point_odyssey_errors(tmp_path, breakage, message) -> None:
    write_point_odyssey(tmp_path, 1, num_frames=8, height=32, width=32, num_points=4)
    seq = tmp_path / "test" / "seq_000"
    if breakage == "no_anno":
        (seq / "anno.npz").unlink()
    elif breakage == "bad_keys":
        np.savez(seq / "anno.npz", trajs_2d=np.zeros((8, 4, 2)), visibilities=np.zeros((8, 4)))
    elif breakage == "bad_shape":
        np.savez(seq / "anno.npz", trajs_2d=np.zeros((8, 4, 2)), visibs=np.zeros((8, 3), np.uint8))
    elif breakage == "missing_frame":
        (seq / "rgbs" / "rgb_00003.jpg").rename(seq / "rgbs" / "rgb_00009.jpg")
    elif breakage == "nothing_left":
        np.savez(seq / "anno.npz", trajs_2d=np.zeros((8, 4, 2)), visibs=np.zeros((8, 4), np.uint8))
    elif breakage == "one_frame":
        for t in range(1, 8):
            (seq / "rgbs" / f"rgb_{t:05d}.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=message) as info:
        PointOdysseyDataset(tmp_path, "test", 8)[0]
    assert str(seq) in str(info.value)
