"""``python -m evaluation.eval`` as a user meets it: a bar that reaches n/n, per-video lines from 1, one final table
(printed and in the JSON), a malformed video in any reader skipped by name, an interruption that says what was kept,
and the synthetic sets evaluating as written."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trackon2.dataset.synthetic import generate_clip, tapvid_entry
from trackon2.dataset.synthetic import main as synthetic_main
from trackon2.evaluation.eval import main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "config" / "tiny.yaml")
TABLE_ROWS = ("AJ", "delta_avg", "OA", "delta_1", "delta_2", "delta_4", "delta_8", "delta_16", "videos evaluated",
              "videos skipped")


def _argv(name: str, path: Path, output: Path, *extra: str) -> list[str]:
    return ["--checkpoint", "none", "--model_config_path", TINY, "--dataset_name", name, "--dataset_path", str(path),
            "--output_json", str(output), "--device", "cpu", *extra]


def _entry(seed: int, frames: int = 6) -> dict:
    return tapvid_entry(generate_clip(seed, num_frames=frames, height=48, width=48, num_points=8))


@pytest.fixture()
def davis_with_a_short_points_array(tmp_path) -> Path:
    """Three videos; the middle one has 6 frames but only 4 frames of points (and of occlusion flags)."""
    bad = _entry(2)
    bad["points"], bad["occluded"] = bad["points"][:, :4], bad["occluded"][:, :4]
    with open(tmp_path / "davis.pkl", "wb") as handle:
        pickle.dump({"a": _entry(1), "b_short": bad, "c": _entry(3)}, handle)
    return tmp_path / "davis.pkl"


def test_a_video_whose_arrays_disagree_is_skipped_and_the_table_printed(davis_with_a_short_points_array, tmp_path,
                                                                        capsys):
    output = tmp_path / "out.json"
    assert main(_argv("davis", davis_with_a_short_points_array, output)) == 0
    captured = capsys.readouterr()
    reason = "6 frames, but 'points' has 4"
    assert f"Video 2/3 (davis.pkl['b_short']): skipped: " in captured.out and reason in captured.out
    assert "Video 1/3 (davis.pkl['a'])" in captured.out and "Video 3/3 (davis.pkl['c'])" in captured.out
    assert "Video 0/" not in captured.out
    assert "3/3" in captured.err.replace("\r", "\n").splitlines()[-1]  # the bar ends full
    payload = json.loads(output.read_text())
    assert payload["num_videos"] == 2 and payload["skipped"][0]["name"] == "davis.pkl['b_short']"
    table = payload["summary"]
    assert tuple(table) == TABLE_ROWS
    assert table["videos evaluated"] == 2 and table["videos skipped"] == 1
    assert table["AJ"] == pytest.approx(payload["final"]["aj"]) and table["delta_8"] == payload["final"]["delta_8"]
    tail = captured.out[captured.out.index("Final results (davis):"):].splitlines()[1:len(TABLE_ROWS) + 1]
    assert [line.split(":")[0].strip() for line in tail] == list(TABLE_ROWS)
    assert len({line.index(":") for line in tail}) == 1  # one column of values
    assert f"AJ: {table['AJ']:.2f}" in captured.out and "videos skipped: 1" in captured.out

    assert main(_argv("davis", davis_with_a_short_points_array, tmp_path / "strict.json", "--strict")) == 1
    err = capsys.readouterr().err
    assert "stopped at video 2 (davis.pkl['b_short'])" in err and reason in err


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_evaluation_says_what_was_kept_and_a_rerun_resumes(tmp_path, how):
    with open(tmp_path / "davis.pkl", "wb") as handle:
        pickle.dump({f"v{i}": _entry(i, frames=8) for i in range(40)}, handle)
    output = tmp_path / "out.json"
    command = [sys.executable, "-m", "evaluation.eval", *_argv("davis", tmp_path / "davis.pkl", output, "--no_progress")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "out.json.partial0.jsonl"
    deadline = time.monotonic() + 120
    while not (partial.exists() and len(partial.read_text().splitlines()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(how)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + how, err
    last = err.strip().splitlines()[-1]
    kept = len(partial.read_text().splitlines()) - 1
    assert "Traceback" not in err
    assert last == (f"interrupted by {signal.Signals(how).name}: {kept} finished video(s) are kept in {partial}; "
                    "rerun the same command to resume")
    assert 2 <= kept < 40 and not output.exists()
    rerun = subprocess.run(command + ["--max_videos", str(kept + 1)], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0 and f"Resuming: {kept} video(s)" in rerun.stdout, rerun.stderr


def test_synthetic_dynamic_replica_evaluates_as_written(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path / "dr"), "--format", "dynamic_replica", "--num_videos", "2",
                    "--num_frames", "12", "--height", "48", "--width", "64", "--num_points", "16"])
    assert (tmp_path / "dr" / "valid").is_dir()
    capsys.readouterr()
    assert main(_argv("dynamic_replica", tmp_path / "dr", tmp_path / "dr.json", "--no_progress")) == 0
    payload = json.loads((tmp_path / "dr.json").read_text())
    assert payload["num_videos"] == 2 and payload["summary"]["videos evaluated"] == 2
    assert "Sequence 2/2 (synthetic_001)" in capsys.readouterr().out


def test_a_dynamic_replica_sequence_without_image_size_is_skipped(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path), "--format", "dynamic_replica", "--num_videos", "2", "--num_frames", "12",
                    "--height", "48", "--width", "64", "--num_points", "16"])
    path = tmp_path / "valid" / "frame_annotations_valid.jgz"
    with gzip.open(path, "rt") as handle:
        frames = json.load(handle)
    for frame in frames:
        if frame["sequence_name"] == "synthetic_000":
            del frame["image"]["size"]
    with gzip.open(path, "wt") as handle:
        json.dump(frames, handle)
    capsys.readouterr()
    assert main(_argv("dynamic_replica", tmp_path, tmp_path / "out.json", "--no_progress")) == 0
    payload = json.loads((tmp_path / "out.json").read_text())
    assert payload["num_videos"] == 1 and payload["skipped"][0]["name"] == "synthetic_000"
    assert "has no image size" in payload["skipped"][0]["reason"]


def test_a_broken_point_odyssey_sequence_is_skipped(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path), "--format", "point_odyssey", "--num_videos", "3", "--num_frames", "10",
                    "--height", "48", "--width", "64", "--num_points", "16"])
    (tmp_path / "test" / "seq_001" / "anno.npz").unlink()
    (tmp_path / "test" / "seq_002" / "rgbs" / "rgb_00003.jpg").unlink()
    capsys.readouterr()
    assert main(_argv("point_odyssey", tmp_path / "test", tmp_path / "out.json", "--no_progress")) == 0
    out = capsys.readouterr().out
    assert "Sequence 2/3 (seq_001): skipped: " in out and "is not a PointOdyssey sequence" in out
    assert "Sequence 3/3 (seq_002): skipped: " in out and "missing ['rgb_00003.jpg']" in out
    payload = json.loads((tmp_path / "out.json").read_text())
    assert payload["num_videos"] == 1 and [entry["name"] for entry in payload["skipped"]] == ["seq_001", "seq_002"]
