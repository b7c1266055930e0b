"""The synthetic clip generator: determinism, speed, ground-truth consistency and the CLI."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from trackon2.dataset.synthetic import generate_clip, main


def colours_at(video: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """(T, N, 3) colour of the pixel containing each track point (clamped into the frame)."""
    num_frames, height, width = video.shape[:3]
    x = np.clip(np.floor(tracks[..., 0]).astype(int), 0, width - 1)
    y = np.clip(np.floor(tracks[..., 1]).astype(int), 0, height - 1)
    return video[np.arange(num_frames)[:, None], y, x].astype(np.float32)


def test_shapes_and_dtypes() -> None:
    clip = generate_clip(3, num_frames=6, height=48, width=64, num_points=20)
    assert clip.video.shape == (6, 48, 64, 3) and clip.video.dtype == np.uint8
    assert clip.tracks.shape == (6, 20, 2) and clip.tracks.dtype == np.float32
    assert clip.visibility.shape == (6, 20) and clip.visibility.dtype == bool


def test_deterministic_by_seed() -> None:
    a, b, c = (generate_clip(s, num_frames=5, height=40, width=40, num_points=10) for s in (7, 7, 8))
    assert np.array_equal(a.video, b.video) and np.array_equal(a.tracks, b.tracks)
    assert np.array_equal(a.visibility, b.visibility)
    assert not np.array_equal(a.video, c.video)


def test_a_standard_size_clip_is_complete() -> None:
    """The size the benchmarks use (24 frames of 256x256, 64 points); its timing belongs in a benchmark, not here."""
    clip = generate_clip(1, num_frames=24, height=256, width=256, num_points=64)
    assert clip.video.shape == (24, 256, 256, 3) and clip.video.dtype == np.uint8
    assert clip.tracks.shape == (24, 64, 2) and np.isfinite(clip.tracks).all()
    assert clip.visibility.any(axis=0).all()  # every point is visible somewhere
    assert clip.video.std() > 10  # textured, not blank


def test_tracks_follow_the_texture() -> None:
    """A visible point shows (nearly) the same colour in every frame; a wrong pairing does not."""
    errors, baseline = [], []
    for seed in range(3):
        clip = generate_clip(seed, num_frames=12, height=128, width=128, num_points=200)
        colours = colours_at(clip.video, clip.tracks)
        first = np.argmax(clip.visibility, axis=0)
        reference = colours[first, np.arange(clip.tracks.shape[1])]
        diff = np.abs(colours - reference[None]).mean(-1)
        shuffled = np.abs(colours - np.roll(reference, 1, axis=0)[None]).mean(-1)
        errors.append(diff[clip.visibility])
        baseline.append(shuffled[clip.visibility])
    assert np.median(np.concatenate(errors)) < 8
    assert np.median(np.concatenate(baseline)) > 4 * np.median(np.concatenate(errors)) + 5


def test_visibility_rules() -> None:
    occluded_inside = 0
    for seed in range(4):
        clip = generate_clip(seed, num_frames=16, height=96, width=96, num_points=128)
        x, y = clip.tracks[..., 0], clip.tracks[..., 1]
        inside = (x >= 0) & (x < 96) & (y >= 0) & (y < 96)
        assert not clip.visibility[~inside].any()
        occluded_inside += int((inside & ~clip.visibility).sum())
        assert clip.visibility.any()
    assert occluded_inside > 0, "no point was ever hidden by a nearer shape"


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        generate_clip(0, num_frames=0)


def test_cli_writes_davis(tmp_path) -> None:
    target = main(["--out", str(tmp_path), "--format", "davis", "--num_videos", "2", "--num_frames", "3",
                   "--height", "32", "--width", "32", "--num_points", "5"])
    with open(target, "rb") as handle:
        data = pickle.load(handle)
    assert sorted(data) == ["video_000", "video_001"]
    assert data["video_000"]["video"].shape == (3, 32, 32, 3)


def test_cli_writes_movi_f(tmp_path) -> None:
    main(["--out", str(tmp_path), "--format", "movi_f", "--num_videos", "1", "--num_frames", "3",
          "--height", "32", "--width", "32"])
    assert len(list((tmp_path / "0000" / "frames").glob("*.png"))) == 3
    assert (tmp_path / "0000" / "0000.npy").is_file()
