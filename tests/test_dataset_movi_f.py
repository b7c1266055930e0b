"""MOVi-F reader: round trip, augmentation geometry, sampling rules, determinism and format errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackon2.dataset.augment import AugmentParams, spatial_augment
from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.movi_f import MoviFLarge
from trackon2.dataset.movi_f_sampling import candidate_tracks, sample_frame_indices, select_tracks
from trackon2.dataset.synthetic import generate_clip, write_movi_f
from trackon2.model.yaml_schema import config_from_mapping
from trackon2.training.data_stream import EpochSampler, make_epoch_loader

CLIP = dict(num_frames=12, height=96, width=128, num_points=96)


def make_args(root, **overrides):
    values = dict(movi_f_root=str(root), T=12, N=32, input_size=[96, 128], frame_sampling="uniform",
                  frame_sample_ratio=1.0)
    values.update(overrides)
    return config_from_mapping(values)


@pytest.fixture(scope="module")
def movi_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("movi_f")
    write_movi_f(root, 2, seed=10, **CLIP)
    return root


def colours_at(video: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    num_frames, height, width = video.shape[:3]
    x = np.clip(np.floor(tracks[..., 0]).astype(int), 0, width - 1)
    y = np.clip(np.floor(tracks[..., 1]).astype(int), 0, height - 1)
    return video[np.arange(num_frames)[:, None], y, x].astype(np.float32)


def test_round_trip_without_augmentation(movi_root) -> None:
    dataset = MoviFLarge.from_config(make_args(movi_root, N=200), use_augs=False)
    assert len(dataset) == 2
    rgbs, trajs, visibles, k = dataset.sample(1, np.random.default_rng(0))
    clip = generate_clip(11, **CLIP)
    assert rgbs.shape == (12, 3, 96, 128) and rgbs.dtype == torch.float32
    assert np.array_equal(rgbs.permute(0, 2, 3, 1).numpy(), clip.video.astype(np.float32))
    assert trajs.shape == (12, 200, 2) and visibles.shape == (12, 200) and visibles.dtype == torch.bool
    expected = candidate_tracks(torch.from_numpy(clip.visibility), 200).numpy()
    assert k == len(expected) < 200
    assert not visibles[:, k:].any() and not trajs[:, k:].any()
    for column in range(k):
        match = np.flatnonzero(np.all(np.abs(clip.tracks - trajs[:, column, None].numpy()) < 1e-4, axis=(0, 2)))
        assert len(match) == 1 and match[0] in expected
        assert np.array_equal(visibles[:, column].numpy(), clip.visibility[:, match[0]])


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_spatial_augmentation_keeps_tracks_on_their_pixels(flip) -> None:
    params = AugmentParams(h_flip_prob=flip, v_flip_prob=flip)
    errors, baseline = [], []
    for seed in range(3):
        clip = generate_clip(seed, num_frames=8, height=128, width=128, num_points=300)
        visible = clip.visibility.copy()
        frames, tracks = spatial_augment(clip.video, clip.tracks, visible, (96, 96), np.random.default_rng(seed), params)
        assert frames.shape == (8, 96, 96, 3)
        inside = (tracks[..., 0] >= 1) & (tracks[..., 0] < 95) & (tracks[..., 1] >= 1) & (tracks[..., 1] < 95)
        mask = visible & inside
        before = colours_at(clip.video, clip.tracks)
        after = colours_at(frames, tracks)
        errors.append(np.abs(after - before).mean(-1)[mask])
        baseline.append(np.abs(np.roll(after, 1, axis=1) - before).mean(-1)[mask])
    error, base = np.median(np.concatenate(errors)), np.median(np.concatenate(baseline))
    assert error < 10 and base > 3 * error + 5


def test_augmented_samples_are_consistent_in_time(movi_root) -> None:
    """End to end with photometric augmentations off: a visible track keeps its colour over the clip."""
    dataset = MoviFLarge.from_config(make_args(movi_root, input_size=[64, 96]), photometric_augs=False)
    errors = []
    for seed in range(4):
        rgbs, trajs, visibles, k = dataset.sample(seed % 2, np.random.default_rng(seed))
        video = rgbs.permute(0, 2, 3, 1).numpy()
        colours = colours_at(video, trajs[:, :k].numpy())
        vis = visibles[:, :k].numpy()
        first = np.argmax(vis, axis=0)
        errors.append(np.abs(colours - colours[first, np.arange(k)][None]).mean(-1)[vis])
    assert np.median(np.concatenate(errors)) < 10


def test_full_augmentation_sample_format(movi_root) -> None:
    """Pixels stay in [0, 255] whatever the thread count (one thread rounds the resizing differently)."""
    dataset = MoviFLarge.from_config(make_args(movi_root, T=8, N=16, input_size=[64, 64], frame_sample_ratio=1.0))
    samples = []
    for threads in (1, 2):  # conftest's restore_torch_globals restores the count after the test
        torch.set_num_threads(threads)
        samples += [dataset.sample(0, np.random.default_rng(seed)) for seed in range(3)]
    for rgbs, trajs, visibles, k in samples:
        assert rgbs.shape == (8, 3, 64, 64) and trajs.shape == (8, 16, 2) and visibles.shape == (8, 16)
        assert 4 <= k <= 16 and float(rgbs.min()) >= 0 and float(rgbs.max()) <= 255
        assert visibles[:, :k].any(dim=0).all()


def test_eraser_hides_covered_points() -> None:
    from trackon2.dataset.augment import erase_boxes

    clip = generate_clip(2, num_frames=6, height=64, width=64, num_points=200)
    visible = clip.visibility.copy()
    params = AugmentParams(eraser_prob=1.0, eraser_bounds=(30, 40), eraser_max=3)
    frames = erase_boxes(clip.video, clip.tracks, visible, np.random.default_rng(0), params)
    assert np.array_equal(visible[0], clip.visibility[0]) and np.array_equal(frames[0], clip.video[0])
    assert (clip.visibility[1:] & ~visible[1:]).any()
    assert not (visible & ~clip.visibility).any()


def test_frame_sampling_rules() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = sample_frame_indices(24, 8, "uniform", 2.0, rng)
        assert len(idx) == 8 and np.all(np.diff(idx) == 2) and idx[-1] < 24
        idx = sample_frame_indices(24, 8, "uniform_mixed", 1.0, rng)
        assert len(np.unique(np.diff(idx))) == 1 and np.diff(idx)[0] in (1, 2)
        idx = sample_frame_indices(24, 8, "random", 2.0, rng)
        assert len(idx) == 8 and np.all(np.diff(idx) > 0) and idx[-1] - idx[0] < 16
    shortened = sample_frame_indices(10, 8, "uniform", 2.0, rng)
    assert len(shortened) == 8 and np.all(np.diff(shortened) == 1) and shortened[-1] < 10
    assert np.array_equal(sample_frame_indices(8, 8, "uniform", 4.0, rng), np.arange(8))
    with pytest.raises(ValueError, match="fewer than T"):
        sample_frame_indices(5, 8, "uniform", 1.0, rng)


def test_track_selection_rules() -> None:
    visible = torch.zeros(8, 10, dtype=torch.bool)
    visible[0, 0] = visible[4, 1] = True  # first and middle frame
    visible[2, 2] = visible[6, 3] = True  # quarter frames (T // 4 and -T // 4)
    visible[1, 4] = visible[7, 5] = True  # never chosen
    assert candidate_tracks(visible, 2).tolist() == [0, 1]
    assert candidate_tracks(visible, 3).tolist() == [0, 1, 2, 3]
    picked = select_tracks(visible, 3, np.random.default_rng(0))
    assert len(picked) == 3 and set(picked.tolist()) <= {0, 1, 2, 3}


def test_determinism(movi_root) -> None:
    dataset = MoviFLarge.from_config(make_args(movi_root, T=6, N=8, input_size=[64, 64]))
    a = dataset.sample(0, np.random.default_rng(3))
    b = dataset.sample(0, np.random.default_rng(3))
    assert all(torch.equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]
    torch.manual_seed(1)
    c = dataset[1]
    torch.manual_seed(1)
    d = dataset[1]
    assert torch.equal(c[1], d[1])


def test_seeded_loader_with_workers(movi_root) -> None:
    dataset = MoviFLarge.from_config(make_args(movi_root, T=4, N=8, input_size=[64, 64]))
    runs = []
    for _ in range(2):
        sampler = EpochSampler(len(dataset), batch_size=2, seed=5)
        sampler.set_position(epoch=0, start=0, iters=1)
        runs.append([batch[1] for batch in make_epoch_loader(dataset, sampler, num_workers=2, pin_memory=False)])
    assert len(runs[0]) == 1 and runs[0][0].shape == (2, 4, 8, 2)
    assert all(torch.equal(x, y) for x, y in zip(*runs))


def test_distributed_sampler_shards(movi_root) -> None:
    dataset = MoviFLarge.from_config(make_args(movi_root, T=4, N=8, input_size=[64, 64]))
    shards = []
    for rank in range(2):
        sampler = EpochSampler(len(dataset), batch_size=1, seed=0, rank=rank, world_size=2)
        sampler.set_position(epoch=0, start=0, iters=1)
        shards.append([index for index, _ in sampler])
    assert sorted(shards[0] + shards[1]) == [0, 1]


def test_missing_root(tmp_path) -> None:
    with pytest.raises(DatasetFormatError, match="does not exist"):
        MoviFLarge.from_config(make_args(tmp_path / "nope"))
    with pytest.raises(DatasetFormatError, match="no sample folders"):
        MoviFLarge.from_config(make_args(tmp_path))


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_coords", "missing key"),
        ("bad_shape", "must be \\(N, T, 2\\)"),
        ("not_dict", "expected a pickled dict"),
        ("missing_frame", "frames, but the annotation"),
        ("bad_image", "unreadable image"),
        ("no_npy", "annotation file does not exist"),
        ("no_frames_dir", "frames folder does not exist"),
    ],
)
def test_malformed_samples(tmp_path, breakage, message) -> None:
    write_movi_f(tmp_path, 1, num_frames=4, height=64, width=64, num_points=8)
    folder = tmp_path / "0000"
    npy = folder / "0000.npy"
    if breakage == "no_coords":
        np.save(npy, np.array({"visibility": np.zeros((8, 4), bool)}, dtype=object), allow_pickle=True)
    elif breakage == "bad_shape":
        np.save(npy, np.array({"coords": np.zeros((8, 4)), "visibility": np.zeros((8, 4), bool)}, dtype=object))
    elif breakage == "not_dict":
        np.save(npy, np.zeros(3))
    elif breakage == "missing_frame":
        (folder / "frames" / "003.png").unlink()
    elif breakage == "bad_image":
        (folder / "frames" / "002.png").write_bytes(b"not a png")
    elif breakage == "no_npy":
        npy.unlink()
    elif breakage == "no_frames_dir":
        for frame in (folder / "frames").iterdir():
            frame.unlink()
        (folder / "frames").rmdir()
    dataset = MoviFLarge.from_config(make_args(tmp_path, T=4, N=8, input_size=[64, 64]), use_augs=False)
    with pytest.raises(DatasetFormatError, match=message) as info:
        dataset.sample(0, np.random.default_rng(0))
    assert str(tmp_path) in str(info.value)
