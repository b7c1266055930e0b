"""``python -m evaluation.eval --model_names ...`` end to end on generated EgoPoints sequences with two tiny
Track-On2 models as candidates, plus ``oracle`` and ``random``: side-by-side numbers equal the single-model runs,
the ensembles choose as they must, cached predictions are reused and invalidated, bad input is one line before any
work, and resuming and torchrun sharding work as in a single-model run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import trackon2.evaluation.multi as multi_module
from tests.tiny_model import tiny_config
from trackon2.dataset.ego_points import EgoPointsDataset
from trackon2.dataset.synthetic import write_ego_points
from trackon2.evaluation.eval import main
from trackon2.evaluation.lineup import build_lineup, parse_lineup
from trackon2.evaluation.multi import predict_video
from trackon2.evaluation.trackers.trackon import TrackOnTracker
from trackon2.model.trackon_predictor import Predictor

REPO = Path(__file__).resolve().parents[1]
NUM_VIDEOS = 3
LABELS = ["a", "b", "oracle", "random"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lineup")
    config = vars(tiny_config())
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        model = Predictor(tiny_config(M_i=config["M"]), support_grid_size=0).model
        torch.save(model.state_dict(), root / f"{name}.pth")
    write_ego_points(root / "ego", NUM_VIDEOS, seed=2, num_frames=5, height=48, width=64, num_points=10)
    return {"root": root, "config": root / "tiny.yaml", "a": root / "a.pth", "b": root / "b.pth", "data": root / "ego"}


def _lineup_argv(setup: dict[str, Path], output: Path, *extra: str, cache: Path | None = None) -> list[str]:
    argv = ["--model_names", "a=trackon2", "b=trackon2", "oracle", "random",
            "--tracker_options", f"a.checkpoint={setup['a']}", f"a.config={setup['config']}",
            f"b.checkpoint={setup['b']}", f"b.config={setup['config']}", *extra,
            "--dataset_name", "ego_points", "--dataset_path", str(setup["data"]), "--device", "cpu", "--no_progress",
            "--output_json", str(output)]
    if cache is not None:
        argv += ["--cache_predictions", "--cache_dir", str(cache)]
    return argv


@pytest.fixture(scope="module")
def lineup_run(setup) -> tuple[dict, str]:
    output = setup["root"] / "lineup.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(_lineup_argv(setup, output, cache=setup["root"] / "cache")) == 0
    return json.loads(output.read_text()), stdout.getvalue()


def _single(setup: dict[str, Path], name: str, output: Path) -> dict:
    assert main(["--model_config_path", str(setup["config"]), "--checkpoint", str(setup[name]), "--dataset_name",
                 "ego_points", "--dataset_path", str(setup["data"]), "--device", "cpu", "--no_progress",
                 "--output_json", str(output)]) == 0
    return json.loads(output.read_text())


@pytest.mark.slow
def test_side_by_side_numbers_equal_single_model_runs(setup, lineup_run, tmp_path) -> None:
    payload, stdout = lineup_run
    assert [t["label"] for t in payload["trackers"]] == LABELS and list(payload["final"]) == LABELS
    assert payload["num_videos"] == NUM_VIDEOS and payload["skipped"] == []
    for name in ("a", "b"):
        single = _single(setup, name, tmp_path / f"{name}.json")
        for video, expected in zip(payload["videos"], single["videos"]):
            assert video["name"] == expected["name"]
            assert video["metrics"][name] == pytest.approx({k: v for k, v in expected.items() if k != "name"},
                                                           abs=1e-9, nan_ok=True)
        assert payload["final"][name] == pytest.approx(single["final"], abs=1e-9, nan_ok=True)
    # random: video j is candidate j % 2 of (a, b), as the reference's round robin
    for video in payload["videos"]:
        assert video["metrics"]["random"] == pytest.approx(video["metrics"][["a", "b"][video["index"] % 2]],
                                                           nan_ok=True)
    header = next(line for line in stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", *LABELS]
    assert any(line.split()[:1] == ["old_d_all_avg"] and len(line.split()) == 5 for line in stdout.splitlines())
    assert stdout.count("Sequence ") == NUM_VIDEOS


@pytest.mark.slow
def test_oracle_is_never_farther_than_any_candidate(setup) -> None:
    specs = parse_lineup(["a=trackon2", "b=trackon2", "oracle"],
                         [f"a.checkpoint={setup['a']}", f"a.config={setup['config']}", f"b.checkpoint={setup['b']}",
                          f"b.config={setup['config']}"])
    built = build_lineup(specs, {"device": torch.device("cpu"), "allow_outside_queries": True})
    dataset = EgoPointsDataset(setup["data"])
    for index in range(len(dataset)):
        sample = dataset.sample(index)
        predictions = predict_video(specs, built, sample, index, torch.device("cpu"))
        errors = {label: torch.norm(tracks - sample.tracks, dim=-1) for label, (tracks, _) in predictions.items()}
        assert (errors["oracle"] <= errors["a"]).all() and (errors["oracle"] <= errors["b"]).all()
        assert torch.equal(errors["oracle"], torch.minimum(errors["a"], errors["b"]))
        assert torch.equal(predictions["oracle"][1], sample.visible)


@pytest.mark.slow
def test_cached_predictions_are_reused_and_invalidated(setup, lineup_run, tmp_path, monkeypatch) -> None:
    payload, _ = lineup_run
    cache = setup["root"] / "cache"
    assert sorted(p.name.split("-")[0] for p in (cache / "ego_points").iterdir()) == ["a", "b"]
    calls: list[str] = []
    real = TrackOnTracker.__call__

    def counted(self, video, queries):
        calls.append(self.identity["checkpoint"])
        return real(self, video, queries)

    monkeypatch.setattr(TrackOnTracker, "__call__", counted)
    again = tmp_path / "again.json"
    assert main(_lineup_argv(setup, again, cache=cache)) == 0
    assert calls == []  # every prediction came from the cache
    assert json.loads(again.read_text())["videos"] == payload["videos"]

    changed = tmp_path / "changed.json"
    assert main(_lineup_argv(setup, changed, "a.support_grid_size=0", cache=cache)) == 0
    assert calls == [str(setup["a"].resolve())] * NUM_VIDEOS  # only the changed tracker runs again
    assert len([p for p in (cache / "ego_points").iterdir() if p.name.startswith("a-")]) == 2
    result = json.loads(changed.read_text())
    assert [v["metrics"]["b"] for v in result["videos"]] == [v["metrics"]["b"] for v in payload["videos"]]
    assert result["trackers"][0]["options"]["support_grid_size"] == 0


@pytest.mark.parametrize(("options", "message"), [
    (["b.checkpoint=/nonexistent/b.pth"], "b: trackon2: checkpoint file not found: /nonexistent/b.pth"),
    (["b.checkpint=x"], "b: trackon2 takes the option(s) checkpoint, config"),
    (["c.checkpoint=x"], "'c' is not in --model_names"),
])
def test_bad_tracker_options_are_one_line_before_any_work(setup, tmp_path, capsys, options, message) -> None:
    argv = _lineup_argv(setup, tmp_path / "out.json")
    at = argv.index("--tracker_options") + 5  # after the four good options: a later one wins
    argv[at:at] = options
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"error: {captured.err.strip()[7:]}"] and message in captured.err
    assert "Evaluating" not in captured.out and not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("names", "message"), [
    (["oracle", "a=trackon2"], "the ensemble 'oracle' needs at least one tracker listed before it"),
    (["trackon2"], "trackon2 needs a checkpoint"),
    (["trackon3"], "unknown tracker 'trackon3'"),
    (["a=trackon2", "a=trackon2"], "lists a twice"),
])
def test_bad_lineups_are_one_line(setup, capsys, names, message) -> None:
    argv = ["--model_names", *names, "--dataset_name", "ego_points", "--dataset_path", str(setup["data"]),
            "--device", "cpu"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_setup_errors_from_the_command_line_have_no_traceback(setup) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "evaluation.eval", "--model_names", "track-on-r", "oracle", "--checkpoint",
         str(setup["a"]), "--dataset_name", "ego_points", "--dataset_path", str(setup["data"]), "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --checkpoint is for the trackon2 entry, which --model_names does not list")


@pytest.mark.slow
def test_interrupted_lineup_run_resumes(setup, lineup_run, tmp_path, monkeypatch, capsys) -> None:
    payload, _ = lineup_run
    output = tmp_path / "resume.json"
    real = multi_module.predict_video
    calls = []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(multi_module, "predict_video", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        main(_lineup_argv(setup, output))
    calls.clear()
    monkeypatch.setattr(multi_module, "predict_video", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(_lineup_argv(setup, output)) == 0
    assert len(calls) == NUM_VIDEOS - 1 and "Resuming: 1 video(s)" in capsys.readouterr().out
    assert json.loads(output.read_text())["videos"] == payload["videos"]


@pytest.mark.slow
def test_torchrun_two_processes_match_one(setup, lineup_run, tmp_path) -> None:
    payload, _ = lineup_run
    output = tmp_path / "distributed.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2",
                "-m", "evaluation.eval"]
    result = subprocess.run([*torchrun, *_lineup_argv(setup, output)], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    distributed = json.loads(output.read_text())
    assert distributed["world_size"] == 2 and distributed["videos"] == payload["videos"]
    assert distributed["final"] == payload["final"]


@pytest.mark.slow
def test_bad_ego_points_sequence_is_skipped_and_named(setup, tmp_path, capsys) -> None:
    data = tmp_path / "ego"
    shutil.copytree(setup["data"], data)
    annotations = dict(np.load(data / "ego_001" / "annot.npz"))
    del annotations["vis_valids"]
    np.savez(data / "ego_001" / "annot.npz", **annotations)
    output = tmp_path / "out.json"
    assert main(["--model_config_path", str(setup["config"]), "--checkpoint", str(setup["a"]), "--dataset_name",
                 "ego_points", "--dataset_path", str(data), "--device", "cpu", "--no_progress",
                 "--output_json", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert [v["name"] for v in payload["videos"]] == ["ego_000", "ego_002"]
    assert payload["skipped"][0]["name"] == "ego_001"
    assert "missing key(s) ['vis_valids']" in payload["skipped"][0]["reason"]
    assert "Skipped 1 of 3 video(s)" in capsys.readouterr().out
