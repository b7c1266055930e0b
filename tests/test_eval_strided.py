"""``python -m evaluation.eval --query_mode strided|first`` end to end on generated TAP-Vid DAVIS with the tiny
random-weight model: the numbers equal a direct computation in each protocol, the report and JSON name the
protocol, and a resume file of one protocol is never mixed into the other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.tiny_model import tiny_config
from trackon2.dataset.synthetic import write_tapvid_davis
from trackon2.dataset.tapvid import TAPVid
from trackon2.evaluation.eval import main, parse_args, prepare, resume_settings
from trackon2.evaluation.metrics import compute_tapvid_metrics, tapvid_video_summary
from trackon2.model.trackon_predictor import Predictor
from trackon2.model.yaml_schema import load_config

NUM_VIDEOS = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("strided")
    (root / "tiny.yaml").write_text(yaml.safe_dump(vars(tiny_config())))
    torch.manual_seed(0)
    model = Predictor(tiny_config(M_i=tiny_config().M), support_grid_size=0).model
    torch.save(model.state_dict(), root / "tiny.pth")
    write_tapvid_davis(root / "davis.pkl", NUM_VIDEOS, seed=7, num_frames=11, height=64, width=64, num_points=24)
    return {"config": root / "tiny.yaml", "checkpoint": root / "tiny.pth", "data": root / "davis.pkl", "root": root}


def _argv(setup: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return ["--model_config_path", str(setup["config"]), "--dataset_name", "davis", "--dataset_path",
            str(setup["data"]), "--checkpoint", str(setup["checkpoint"]), "--output_json", str(output),
            "--device", "cpu", "--no_progress", *extra]


def _direct(setup: dict[str, Path], mode: str) -> list[dict[str, float]]:
    """Each video's metrics computed here: the protocol's queries, tracker and scored frames."""
    args = load_config(setup["config"])
    args.M_i = 24  # the DAVIS override
    predictor = Predictor(args, checkpoint_path=setup["checkpoint"], support_grid_size=20,
                          backward_tracking=mode == "strided", pin_query_points=False)
    dataset = TAPVid(None, data_root=setup["data"], dataset_type="davis", query_mode=mode)
    summaries = []
    for video, tracks, visible, query_points in (dataset[i] for i in range(len(dataset))):
        pred_tracks, pred_visible = predictor(video[None], query_points[None][..., [0, 2, 1]])
        metrics = compute_tapvid_metrics(query_points[None].numpy(), (~visible).T[None].numpy(),
                                         tracks.permute(1, 0, 2)[None].numpy(), (~pred_visible[0]).T[None].numpy(),
                                         pred_tracks[0].permute(1, 0, 2)[None].numpy(), mode)
        summaries.append(tapvid_video_summary(metrics))
    return summaries


@pytest.fixture(scope="module")
def runs(setup) -> dict[str, tuple[dict, str]]:
    results = {}
    for mode in ("first", "strided"):
        output = setup["root"] / f"{mode}.json"
        extra = () if mode == "first" else ("--query_mode", "strided")
        with pytest.MonkeyPatch.context() as patch:
            printed = []
            patch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
            assert main(_argv(setup, output, *extra)) == 0
        results[mode] = json.loads(output.read_text()), "\n".join(printed)
    return results


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_each_protocol_matches_a_direct_computation(setup, runs, mode):
    payload, printed = runs[mode]
    assert payload["query_mode"] == mode and payload["backward_tracking"] == (mode == "strided")
    assert payload["num_videos"] == NUM_VIDEOS and payload["skipped"] == []
    for video, expected in zip(payload["videos"], _direct(setup, mode)):
        for key, value in expected.items():
            assert video[key] == pytest.approx(value, abs=1e-9), key
    assert f"Protocol: queried {mode}" in printed and f"davis (queried {mode})" in printed
    assert f"AJ: {payload['final']['aj']:.2f}" in printed


def test_strided_queries_start_on_later_frames_and_are_scored_before_them(setup, runs):
    strided = TAPVid(None, data_root=setup["data"], dataset_type="davis", query_mode="strided")[0][3]
    first = TAPVid(None, data_root=setup["data"], dataset_type="davis")[0][3]
    assert set(strided[:, 0].tolist()) == {0.0, 5.0, 10.0} and len(strided) > len(first)
    assert runs["strided"][0]["final"] != runs["first"][0]["final"]
    assert np.isfinite(runs["strided"][0]["final"]["aj"])


def test_the_resume_file_refuses_to_mix_protocols(setup, tmp_path, capsys):
    output = tmp_path / "out.json"
    args = parse_args(_argv(setup, output))
    settings = resume_settings(args, prepare(args, torch.device("cpu"))[0])
    assert settings["query_mode"] == "first"
    record = {"index": 0, "name": "davis.pkl['video_0000']", "metrics": {"aj": 1.0}, "error": None}
    (tmp_path / "out.json.partial0.jsonl").write_text(json.dumps({"settings": settings}) + "\n"
                                                      + json.dumps(record) + "\n")
    assert main(_argv(setup, output, "--query_mode", "strided")) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "query_mode: 'first' there, 'strided' now" in err
    assert not output.exists()


def test_strided_is_refused_outside_tap_vid(setup, capsys):
    with pytest.raises(SystemExit):
        main(["--dataset_name", "point_odyssey", "--dataset_path", str(setup["root"]), "--checkpoint",
              str(setup["checkpoint"]), "--query_mode", "strided"])
    assert "--query_mode strided applies to the TAP-Vid datasets only" in capsys.readouterr().err
