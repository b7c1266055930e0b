"""TAP-Vid readers (DAVIS, Kinetics, RGB-Stacking, RoboTAP): round trips, query modes and format errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.synthetic import (
    generate_clip,
    tapvid_entry,
    write_robotap,
    write_tapvid_davis,
    write_tapvid_kinetics,
    write_tapvid_rgb_stacking,
)
from trackon2.dataset.tapvid import TAPVid
from trackon2.dataset.tapvid_queries import sample_queries_first, sample_queries_strided
from trackon2.model.yaml_schema import config_from_mapping

CLIP = dict(num_frames=8, height=256, width=256, num_points=24)


def check_first_queries(item, clip, scale=(1.0, 1.0), atol=1e-3) -> None:
    rgbs, trajs, visibles, queries = item
    ever = clip.visibility.any(axis=0)
    expected = clip.tracks[:, ever] * np.array(scale, dtype=np.float32)
    assert trajs.shape == expected.shape and visibles.shape == expected.shape[:2]
    assert np.allclose(trajs.numpy(), expected, atol=atol)
    assert np.array_equal(visibles.numpy(), clip.visibility[:, ever])
    first = np.argmax(clip.visibility[:, ever], axis=0)
    assert np.array_equal(queries[:, 0].numpy(), first)
    columns = np.arange(len(first))
    assert np.allclose(queries[:, 1].numpy(), expected[first, columns, 1], atol=atol)
    assert np.allclose(queries[:, 2].numpy(), expected[first, columns, 0], atol=atol)


def test_davis_round_trip(tmp_path) -> None:
    path = write_tapvid_davis(tmp_path / "davis.pkl", 2, seed=4, **CLIP)
    dataset = TAPVid(None, data_root=path, dataset_type="davis")
    assert len(dataset) == 2
    for index in range(2):
        clip = generate_clip(4 + index, **CLIP)
        item = dataset[index]
        assert item[0].shape == (8, 3, 256, 256) and item[0].dtype == torch.float32
        assert np.array_equal(item[0].permute(0, 2, 3, 1).numpy(), clip.video.astype(np.float32))
        check_first_queries(item, clip)


def test_davis_from_args_and_resizing(tmp_path) -> None:
    clip_args = dict(num_frames=5, height=96, width=160, num_points=12)
    path = write_tapvid_davis(tmp_path / "davis.pkl", 1, seed=2, **clip_args)
    args = config_from_mapping({"tapvid_root": str(path), "eval_dataset": "davis"})
    item = TAPVid(args)[0]
    assert item[0].shape == (5, 3, 256, 256)
    check_first_queries(item, generate_clip(2, **clip_args), scale=(256 / 160, 256 / 96))
    colour = generate_clip(2, **clip_args).video.reshape(-1, 3).mean(0)
    assert np.allclose(item[0].permute(0, 2, 3, 1).reshape(-1, 3).mean(0).numpy(), colour, atol=2.0)


def test_strided_queries(tmp_path) -> None:
    clip_args = dict(num_frames=12, height=256, width=256, num_points=16)
    path = write_tapvid_davis(tmp_path / "davis.pkl", 1, **clip_args)
    clip = generate_clip(0, **clip_args)
    rgbs, trajs, visibles, queries = TAPVid(None, data_root=path, dataset_type="davis", query_mode="strided")[0]
    assert len(queries) == clip.visibility[::5].sum()
    t = queries[:, 0].long()
    rows = torch.arange(len(t))
    assert visibles[t, rows].all()
    assert torch.allclose(trajs[t, rows].flip(-1), queries[:, 1:], atol=1e-4)
    assert set(t.tolist()) <= {0, 5, 10}


def test_query_functions_directly() -> None:
    occluded = np.array([[True, False, False], [True, True, True], [False, True, True]])
    points = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    first = sample_queries_first(occluded, points)
    assert first["query_points"].tolist() == [[1, 3, 2], [0, 13, 12]]
    assert first["trackgroup"].tolist() == [0, 2]
    strided = sample_queries_strided(occluded, points, stride=2)
    assert strided["query_points"][:, 0].tolist() == [0, 2]
    assert strided["trackgroup"].tolist() == [2, 0]


def test_kinetics_jpeg_shards(tmp_path) -> None:
    paths = write_tapvid_kinetics(tmp_path, 3, seed=1, **CLIP)
    assert [p.name for p in paths] == ["0000_of_0010.pkl", "0001_of_0010.pkl", "0002_of_0010.pkl"]
    dataset = TAPVid(None, data_root=tmp_path, dataset_type="kinetics")
    assert len(dataset) == 3
    item = dataset[1]
    clip = generate_clip(2, **CLIP)
    assert np.abs(item[0].permute(0, 2, 3, 1).numpy() - clip.video).mean() < 3
    check_first_queries(item, clip)


def test_rgb_stacking_and_robotap(tmp_path) -> None:
    path = write_tapvid_rgb_stacking(tmp_path / "rgb_stacking.pkl", 2, seed=6, **CLIP)
    check_first_queries(TAPVid(None, data_root=path, dataset_type="rgb_stacking")[1], generate_clip(7, **CLIP))
    write_robotap(tmp_path / "robotap", 3, seed=8, **CLIP)
    dataset = TAPVid(None, data_root=tmp_path / "robotap", dataset_type="robotap")
    assert len(dataset) == 3
    check_first_queries(dataset[1], generate_clip(10, **CLIP))  # split0 holds clips 0 and 2, split1 clip 1
    check_first_queries(dataset[2], generate_clip(9, **CLIP))


def dump(path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def small_entry(**changes):
    entry = tapvid_entry(generate_clip(0, num_frames=3, height=16, width=16, num_points=4))
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    "content, message",
    [
        ([small_entry()], "expected a dict of videos"),
        ({"a": {"video": np.zeros((3, 16, 16, 3), np.uint8)}}, "missing key"),
        ({"a": small_entry(occluded=np.zeros((4, 2), bool))}, "'occluded' has shape"),
        ({"a": small_entry(points=np.zeros((4, 3)))}, "must be \\(N, T, 2\\)"),
        ({"a": small_entry(video=np.zeros((2, 16, 16, 3), np.uint8))}, "2 frames"),
    ],
)
def test_malformed_davis(tmp_path, content, message) -> None:
    path = tmp_path / "davis.pkl"
    dump(path, content)
    with pytest.raises(DatasetFormatError, match=message) as info:
        TAPVid(None, data_root=path, dataset_type="davis")
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path) -> None:
    garbage = tmp_path / "davis.pkl"
    garbage.write_bytes(b"\x00not a pickle")
    with pytest.raises(DatasetFormatError, match="not a readable pickle"):
        TAPVid(None, data_root=garbage, dataset_type="davis")
    with pytest.raises(DatasetFormatError, match="does not exist"):
        TAPVid(None, data_root=tmp_path / "missing.pkl", dataset_type="davis")
    with pytest.raises(DatasetFormatError, match="no files matching"):
        TAPVid(None, data_root=tmp_path, dataset_type="kinetics")
    dump(tmp_path / "0000_of_0010.pkl", [small_entry(video=[b"junk"] * 3)])
    dataset = TAPVid(None, data_root=tmp_path, dataset_type="kinetics")
    with pytest.raises(DatasetFormatError, match="undecodable image bytes"):
        dataset[0]
    with pytest.raises(ValueError, match="dataset_type"):
        TAPVid(None, data_root=tmp_path, dataset_type="sintel")
