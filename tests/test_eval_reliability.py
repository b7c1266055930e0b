"""``python -m evaluation.eval`` with bad videos among good ones: each bad video is named and skipped (or stops a
``--strict`` run after saving), results are saved as they come and a rerun resumes; output paths are checked first."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import trackon2.evaluation.evaluator as evaluator_module
from tests.tiny_model import tiny_config
from trackon2.dataset.synthetic import generate_clip, tapvid_entry
from trackon2.evaluation.eval import main
from trackon2.model.trackon_predictor import Predictor

GOOD = ("good_a", "good_b", "good_c")
# name -> (how the item is broken, the reason the report must give)
BAD = {
    "bad_grayscale": "'video' must be (T, H, W, 3)",
    "bad_jpeg": "undecodable image bytes",
    "bad_nan": "NaN or infinite coordinates",
    "bad_no_visible": "no point is visible in any frame",
    "bad_zero_frames": "the video has no frames",
}


def _entry(seed: int) -> dict:
    return tapvid_entry(generate_clip(seed, num_frames=4, height=48, width=48, num_points=8))


def _broken(name: str) -> dict:
    item = _entry(99)
    if name == "bad_grayscale":
        item["video"] = item["video"][..., 0]
    elif name == "bad_jpeg":
        item = tapvid_entry(generate_clip(99, num_frames=4, height=48, width=48, num_points=8), encoded="JPEG")
        item["video"][2] = item["video"][2][:40]
    elif name == "bad_nan":
        item["occluded"][:] = False
        item["points"][1, 2] = np.nan
    elif name == "bad_no_visible":
        item["occluded"][:] = True
    elif name == "bad_zero_frames":
        item = {"video": np.zeros((0, 48, 48, 3), np.uint8), "points": np.zeros((8, 0, 2), np.float32),
                "occluded": np.zeros((8, 0), bool)}
    return item


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_bad")
    (root / "tiny.yaml").write_text(yaml.safe_dump(vars(tiny_config())))
    torch.manual_seed(0)
    torch.save(Predictor(tiny_config(M_i=4), support_grid_size=0).model.state_dict(), root / "tiny.pth")
    data = {name: _entry(i) for i, name in enumerate(GOOD)}
    data.update({name: _broken(name) for name in BAD})
    with open(root / "davis.pkl", "wb") as handle:
        pickle.dump(data, handle)
    with open(root / "good.pkl", "wb") as handle:
        pickle.dump({name: data[name] for name in GOOD}, handle)
    return root


def _argv(root: Path, output: Path | str, data: str = "davis.pkl", *extra: str) -> list[str]:
    return ["--model_config_path", str(root / "tiny.yaml"), "--dataset_name", "davis",
            "--dataset_path", str(root / data), "--model_checkpoint_path", str(root / "tiny.pth"),
            "--output_json", str(output), "--device", "cpu", "--no_progress", *extra]


def _sorted_names() -> list[str]:
    return sorted((*GOOD, *BAD))


@pytest.mark.slow
def test_bad_videos_are_named_skipped_and_counted(setup, tmp_path, capsys):
    output = tmp_path / "out.json"
    assert main(_argv(setup, output)) == 0
    out = capsys.readouterr().out
    payload = json.loads(output.read_text())
    assert payload["num_videos"] == len(GOOD) and [v["name"] for v in payload["videos"]] == [f"davis.pkl['{n}']" for n in GOOD]
    assert f"Skipped {len(BAD)} of {len(GOOD) + len(BAD)} video(s)" in out
    by_name = {entry["name"]: entry for entry in payload["skipped"]}
    assert sorted(by_name) == [f"davis.pkl['{n}']" for n in sorted(BAD)]
    for name, reason in BAD.items():
        index = _sorted_names().index(name)
        entry = by_name[f"davis.pkl['{name}']"]
        assert entry["index"] == index and reason in entry["reason"], entry
        assert f"video {index + 1} (davis.pkl['{name}']): {entry['reason']}" in out
    assert np.isfinite(payload["final"]["aj"])
    assert not list(tmp_path.glob("*.partial*"))  # partial results are removed once the final JSON exists


@pytest.mark.slow
def test_strict_stops_at_the_first_bad_video_and_a_rerun_resumes(setup, tmp_path, capsys, monkeypatch):
    output = tmp_path / "out.json"
    assert main(_argv(setup, output, "davis.pkl", "--strict")) == 1
    err = capsys.readouterr().err
    first_bad = _sorted_names().index("bad_grayscale")
    assert err.startswith("error: --strict: stopped at video 1 ") and "bad_grayscale" in err
    assert "rerun to resume" in err and "Traceback" not in err
    assert first_bad == 0 and not output.exists()
    assert (tmp_path / "out.json.partial0.jsonl").exists()  # kept, so that a rerun after the fix resumes
    output = tmp_path / "good.json"

    # The good videos are saved as they finish: a strict run over only the good ones is interrupted after two.
    calls = []
    real = evaluator_module.evaluate_sample

    def crash_on_third(predictor, sample, rules, device):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(predictor, sample, rules, device)

    monkeypatch.setattr(evaluator_module, "evaluate_sample", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        main(_argv(setup, output, "good.pkl"))
    partial = [json.loads(line) for line in (tmp_path / "good.json.partial0.jsonl").read_text().splitlines()]
    assert [(r["index"], r["name"]) for r in partial[1:]] == [(0, "good.pkl['good_a']"), (1, "good.pkl['good_b']")]
    saved = {record["index"]: record["metrics"] for record in partial[1:]}

    counted = []
    monkeypatch.setattr(evaluator_module, "evaluate_sample",
                        lambda p, s, r, d: counted.append(1) or real(p, s, r, d))
    assert main(_argv(setup, output, "good.pkl")) == 0
    assert len(counted) == 1  # only the third video is evaluated again
    assert "Resuming: 2 video(s)" in capsys.readouterr().out
    payload = json.loads(output.read_text())
    assert payload["num_videos"] == 3 and payload["skipped"] == []
    for index, metrics in saved.items():
        assert payload["videos"][index]["aj"] == pytest.approx(metrics["aj"], abs=1e-12)
    assert not list(tmp_path.glob("good.json.partial*"))


def test_partial_results_of_another_run_are_not_mixed_in(setup, tmp_path, capsys):
    output = tmp_path / "out.json"
    (tmp_path / "out.json.partial0.jsonl").write_text(json.dumps({"settings": {"dataset_name": "kinetics"}}) + "\n")
    assert main(_argv(setup, output, "good.pkl")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other settings" in err and "delete it" in err


@pytest.mark.slow
def test_a_line_cut_short_by_a_crash_is_dropped(setup, tmp_path, capsys):
    output = tmp_path / "out.json"
    assert main(_argv(setup, output, "good.pkl", "--max_videos", "1")) == 0
    capsys.readouterr()
    from trackon2.evaluation.eval import parse_args, prepare, resume_settings

    args = parse_args(_argv(setup, output, "good.pkl"))
    settings = resume_settings(args, prepare(args, torch.device("cpu"))[0])
    first = json.loads(output.read_text())["videos"][0]
    record = {"index": 0, "name": first["name"], "metrics": {k: v for k, v in first.items() if k != "name"},
              "error": None}
    lines = [json.dumps({"settings": settings}), json.dumps(record), '{"index": 1, "na']
    (tmp_path / "out.json.partial0.jsonl").write_text("\n".join(lines))
    assert main(_argv(setup, output, "good.pkl")) == 0
    assert "Resuming: 1 video(s)" in capsys.readouterr().out
    assert json.loads(output.read_text())["num_videos"] == 3


@pytest.mark.parametrize("target, message", [
    ("folder", "is a folder"),
    ("file/out.json", "is a file, not a folder"),
])
def test_output_path_is_checked_before_any_work(setup, tmp_path, capsys, target, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as excinfo:
        main(_argv(setup, tmp_path / target))
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "--output_json" in err and "Traceback" not in err


def test_every_video_bad_is_one_error(setup, tmp_path, capsys):
    data = {name: _broken(name) for name in ("bad_nan", "bad_jpeg")}
    with open(tmp_path / "bad.pkl", "wb") as handle:
        pickle.dump(data, handle)
    argv = _argv(setup, tmp_path / "out.json")
    argv[argv.index("--dataset_path") + 1] = str(tmp_path / "bad.pkl")
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "none of the 2 video(s) could be evaluated" in captured.err
    assert json.loads((tmp_path / "out.json").read_text())["num_videos"] == 0
