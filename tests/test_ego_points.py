"""EgoPoints: the reader's layout, decoding and scaling rules, and the metrics against the reference's own outputs.

``fixtures/ego_points_metrics_reference.npz`` holds random cases and what the Track-On-R reference's
``compute_ego_points_metrics`` returned for them; ``fixtures/make_track_on_r_eval_fixtures.py`` made it by
importing the reference's module beside this repository.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trackon2.dataset.ego_points import EgoPointsDataset
from trackon2.dataset.errors import DatasetFormatError
from trackon2.dataset.synthetic import generate_clip, write_ego_points
from trackon2.evaluation.datasets import benchmark
from trackon2.evaluation.ego_points_metrics import compute_ego_points_metrics

FIXTURE = Path(__file__).parent / "fixtures" / "ego_points_metrics_reference.npz"
CLIP = dict(num_frames=5, height=48, width=64, num_points=12)


def _cases() -> list[dict[str, object]]:
    archive = np.load(FIXTURE)
    names = sorted({key.split("/")[0] for key in archive.files})
    return [{key.split("/")[1]: archive[key] for key in archive.files if key.startswith(f"{name}/")}
            for name in names]


@pytest.mark.parametrize("case", _cases(), ids=lambda case: f"{case['pred_visibility'].dtype}-{case['size']}")
def test_metrics_equal_the_reference(case) -> None:
    expected = json.loads(str(case["metrics"]))
    t = {key: torch.from_numpy(value) for key, value in case.items() if key not in ("metrics", "size")}
    height, width = (int(v) for v in case["size"])
    got = compute_ego_points_metrics(t["pred_tracks"], t["pred_visibility"], t["gt_tracks"], t["visibility"],
                                     t["valids"], t["vis_valids"], t["out_of_view"], t["occluded"], height, width)
    assert list(got) == list(expected)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == value, key  # the same float32 operations: equal, not merely close


def test_fixture_covers_every_metric_and_branch() -> None:
    cases = _cases()
    metrics = [json.loads(str(case["metrics"])) for case in cases]
    assert any("out_of_view" not in m for m in metrics)
    assert any("RE_ID_acc" in m and m["RE_ID_acc"] > 0 for m in metrics)
    assert any(math.isnan(m["median_l2"]) for m in metrics) and any(math.isfinite(m["median_l2"]) for m in metrics)
    kinds = {str(case["pred_visibility"].dtype) for case in cases}
    assert kinds == {"bool", "float32"}
    assert any(case["pred_visibility"].dtype == np.float32 and case["pred_visibility"].max() > 1 for case in cases)


def test_perfect_prediction() -> None:
    case = _cases()[1]  # no point out of view
    t = {key: torch.from_numpy(value) for key, value in case.items() if key not in ("metrics", "size")}
    height, width = (int(v) for v in case["size"])
    got = compute_ego_points_metrics(t["gt_tracks"], t["visibility"] > 0, t["gt_tracks"], t["visibility"],
                                     t["valids"], t["vis_valids"], t["out_of_view"], t["occluded"], height, width)
    assert got["old_d_all_avg"] == pytest.approx(100, abs=1e-3) and got["new_d_all_avg"] == pytest.approx(100, abs=1e-3)
    assert got["median_l2"] == 0 and got["vis_acc"] == pytest.approx(100, abs=1e-3) and got["in_view"] == 100


def _write_sequence(root: Path, name: str, frames: int = 3, size: tuple[int, int] = (30, 40),
                    **annotations: np.ndarray) -> Path:
    seq = root / name
    (seq / "rgbs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(frames):
        cv2.imwrite(str(seq / "rgbs" / f"{t:04d}.jpg"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    trajs = np.tile(np.array([[10.0, 20.0], [5.0, 7.5]], np.float32), (frames, 1, 1))
    flags = {key: np.ones((frames, 2), np.uint8)
             for key in ("valids", "visibs", "vis_valids", "out_of_view", "occluded")}
    np.savez(seq / "annot.npz", **{"trajs_2d": trajs, **flags, **annotations})
    return seq


def test_reader_decodes_resizes_and_scales_as_the_reference(tmp_path) -> None:
    seq = _write_sequence(tmp_path, "kitchen", frames=3, size=(30, 40))
    item = EgoPointsDataset(tmp_path)[0]
    expected = []
    for path in sorted((seq / "rgbs").glob("*.jpg")):
        frame = cv2.imread(str(path))[:, :, ::-1]
        expected.append(cv2.resize(frame, (512, 384), interpolation=cv2.INTER_LINEAR))
    assert torch.equal(item["video"], torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2).float())
    scale = torch.tensor([512 / 40, 384 / 30])
    assert torch.equal(item["trajectory"][0], torch.tensor([[10.0, 20.0], [5.0, 7.5]]) * scale)
    assert item["seq"] == "kitchen"
    for key in ("visibility", "valids", "vis_valids", "out_of_view", "occluded"):
        assert item[key].dtype == torch.float32 and item[key].shape == (3, 2)
    sample = EgoPointsDataset(tmp_path).sample(0)
    assert torch.equal(sample.queries, torch.cat([torch.zeros(2, 1), item["trajectory"][0]], dim=1))
    assert set(sample.annotations) == {"visibility", "valids", "vis_valids", "out_of_view", "occluded"}


def test_sequences_and_frames_in_the_reference_order(tmp_path) -> None:
    for name in ("seq", "seq-x", "a"):
        _write_sequence(tmp_path, name)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "no_annotation").mkdir()
    dataset = EgoPointsDataset(tmp_path)
    # sorted glob("*/annot.npz") strings: "seq-x/annot.npz" < "seq/annot.npz" because '-' < '/'
    assert [dataset.name(i) for i in range(len(dataset))] == ["a", "seq-x", "seq"]


@pytest.mark.parametrize(("change", "message"), [
    ({"drop": "occluded"}, "missing key(s) ['occluded']"),
    ({"frames": 4}, "annotates 3 frames, but rgbs/ holds 4"),
    ({"valids": np.ones((3, 5), np.uint8)}, "flags must be (T, N)"),
])
def test_bad_sequences_name_the_problem(tmp_path, change, message) -> None:
    seq = _write_sequence(tmp_path, "bad", frames=change.get("frames", 3))
    if "frames" in change:
        annotations = dict(np.load(seq / "annot.npz"))
        np.savez(seq / "annot.npz", **{k: v[:3] for k, v in annotations.items()})
    else:
        annotations = dict(np.load(seq / "annot.npz"))
        annotations.pop(change.get("drop", ""), None)
        annotations.update({k: v for k, v in change.items() if k != "drop"})
        np.savez(seq / "annot.npz", **annotations)
    with pytest.raises(DatasetFormatError, match=None) as excinfo:
        EgoPointsDataset(tmp_path).sample(0)
    assert message in str(excinfo.value) and str(seq) in str(excinfo.value)


def test_empty_folder_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(DatasetFormatError, match="no sequence folder with an annot.npz"):
        EgoPointsDataset(tmp_path)


def test_synthetic_writer_round_trip(tmp_path) -> None:
    write_ego_points(tmp_path, 2, seed=3, **CLIP)
    dataset = EgoPointsDataset(tmp_path)
    assert len(dataset) == 2
    clip = generate_clip(4, **CLIP)
    item = dataset[1]
    scale = torch.tensor([512 / CLIP["width"], 384 / CLIP["height"]])
    assert torch.allclose(item["trajectory"], torch.from_numpy(clip.tracks) * scale, atol=1e-4)
    assert torch.equal(item["visibility"] > 0, torch.from_numpy(clip.visibility))
    inside = ((clip.tracks >= 0) & (clip.tracks <= [CLIP["width"], CLIP["height"]])).all(-1)
    assert torch.equal(item["out_of_view"] > 0, torch.from_numpy(~inside))
    assert torch.equal(item["occluded"] > 0, torch.from_numpy(~clip.visibility & inside))
    sample = dataset.sample(1)
    metrics = benchmark("ego_points").score(sample, sample.tracks, sample.visible)
    assert metrics["old_d_all_avg"] == pytest.approx(100, abs=1e-3)
    assert metrics["vis_acc"] == pytest.approx(100, abs=1e-3)


@pytest.mark.slow
def test_per_epoch_validation_on_ego_points(tmp_path) -> None:
    from tests.tiny_model import tiny_config
    from trackon2.model.yaml_schema import config_from_mapping
    from trackon2.training.config import RunConfig
    from trackon2.training.validation import TrainingEvaluator, load_eval_dataset

    write_ego_points(tmp_path, 2, seed=1, **CLIP)
    args = config_from_mapping({**vars(tiny_config()), "eval_dataset": "ego_points", "tapvid_root": str(tmp_path)})
    run = RunConfig.from_namespace(args)
    dataset = load_eval_dataset(run.data)
    torch.manual_seed(0)
    model = TrainingEvaluator(run, dataset, torch.device("cpu")).predictor.model
    scores = TrainingEvaluator(run, dataset, torch.device("cpu"))(model, show_progress=False)
    assert math.isnan(scores["aj"])  # EgoPoints has no AJ: never a best-AJ checkpoint
    assert scores["delta_avg"] == scores["old_d_all_avg"] and scores["oa"] == scores["vis_acc"]
    assert 0 <= scores["oa"] <= 100
