"""The ONNX export: the CLI on the tiny model, the graph checked by onnx.checker and run by ONNX Runtime's CPU
provider, tracks equal to the Predictor's stream for stream, the torch-free runtime, the README's example, and
one clear line for each kind of bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny_model import tiny_config

ROOT = Path(__file__).resolve().parents[1]
MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
if MISSING:
    REASON = f"{', '.join(MISSING)} not installed: pip install -r requirements-export.txt (scripts/test.sh does this)"
    if os.environ.get("CI"):
        pytest.fail(f"{REASON}; CI must run the ONNX export tests", pytrace=False)
    pytest.skip(REASON, allow_module_level=True)

import onnx  # noqa: E402

from trackon2.export.compare import compare_streams, random_stream  # noqa: E402
from trackon2.export.layout import MANIFEST_NAME, METADATA_KEY, STEP_GRAPH_NAME  # noqa: E402
from trackon2.export.runtime import ExportFormatError, OnnxTracker, StreamInputError, support_grid  # noqa: E402
from trackon2.runtime.predictor import Predictor, get_points_on_a_grid  # noqa: E402

pytestmark = pytest.mark.slow  # exports a model (about a minute) and runs subprocesses
SUPPORT = 3
NUM_QUERIES = 16


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export.onnx", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return Predictor(tiny_config(), support_grid_size=SUPPORT).save(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="module")
def tiny_export(tiny_weights, tmp_path_factory) -> Path:
    """The tiny model exported by the CLI (its input size and M_i from config/tiny.yaml)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    done = run_export("--checkpoint", str(tiny_weights), "--config", "config/tiny.yaml", "--num_queries",
                      str(NUM_QUERIES), "--memory_size", "6", "--support_grid_size", str(SUPPORT), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_graph_passes_the_checker_and_the_json_describes_it(tiny_export):
    graph = onnx.load(str(tiny_export / STEP_GRAPH_NAME))
    onnx.checker.check_model(graph, full_check=True)
    spec = json.loads((tiny_export / MANIFEST_NAME).read_text())
    assert (spec["input_size"], spec["memory_size"], spec["num_queries"]) == ([64, 96], 6, NUM_QUERIES)
    inputs = {value.name: value for value in graph.graph.input}
    outputs = {value.name for value in graph.graph.output}
    for entry in spec["state"]:
        assert entry["input"] in inputs and entry["output"] in outputs
    memory_shape = [dim.dim_param or dim.dim_value for dim in inputs["memory"].type.tensor_type.shape.dim]
    assert memory_shape == [1, "num_slots", 6, 64]  # any number of query slots, fixed M_i and D
    assert {entry.key: entry.value for entry in graph.metadata_props}[METADATA_KEY] == str(spec["format_version"])
    ops = {node.op_type for node in graph.graph.node}
    assert {"GridSample", "TopK"} <= ops  # the model's deformable sampling and top-K re-ranking, as they are


def test_support_grid_is_the_predictors():
    expected = get_points_on_a_grid(20, (288, 384))[0].numpy()
    np.testing.assert_array_equal(support_grid(20, 288, 384), expected)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_tracks_equal_the_predictors_stream_for_stream(tiny_export, tiny_weights, fast):
    predictor = Predictor(tiny_config(), checkpoint_path=tiny_weights, support_grid_size=SUPPORT, fast=fast)
    tracker = OnnxTracker(tiny_export, threads=1)
    difference = compare_streams(predictor, tracker, random_stream(24, 70, 100))
    assert difference.frames == 24 and difference.ids_equal
    assert difference.max_point_px < 1e-3
    assert difference.max_confidence < 1e-4
    assert not difference.far_flips, difference.far_flips


RUNTIME_WITHOUT_TORCH = """
import sys
import numpy as np
from trackon2.export.runtime import OnnxTracker
tracker = OnnxTracker(sys.argv[1], threads=1)
ids = tracker.add_queries([[10.0, 20.0], [50.0, 40.0]])
frames = np.random.default_rng(0).integers(0, 256, (4, 70, 100, 3), dtype=np.uint8)
for t, frame in enumerate(frames):
    tracks = tracker.track_frame(frame, new_queries=[[30.0, 30.0]] if t == 2 else None)
assert tracks.ids == [0, 1, 2] and tracks.points.shape == (3, 2), tracks
assert "torch" not in sys.modules, "the runtime imported torch"
print("ok")
"""


def test_runtime_tracks_without_importing_torch(tiny_export):
    done = subprocess.run([sys.executable, "-c", RUNTIME_WITHOUT_TORCH, str(tiny_export)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_readme_example_tracks_the_sample_video(tiny_export):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- onnx-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    assert 'Path("exported/tiny")' in code and "torch" not in code
    code = code.replace('Path("exported/tiny")', f"Path({str(tiny_export)!r})")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 48 and lines[-1].startswith("47 ")  # one line per frame of media/sample.mp4


# ------------------------------------------------------------------------------------------------ bad input
def test_export_size_the_model_cannot_take(tmp_path):
    done = run_export("--checkpoint", "none", "--config", "config/tiny.yaml", "--num_queries", "4", "--height", "70",
                      "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "--height 70: the model takes input sides that are positive multiples of 32" in done.stderr.splitlines()[-1]


def test_export_without_the_exporters_packages_is_one_line(monkeypatch, capsys, tmp_path):
    from trackon2.export import onnx as export_cli

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "onnxscript"
                        else real_find_spec(name, *rest))
    code = export_cli.main(["--checkpoint", "none", "--config", "config/tiny.yaml", "--num_queries", "4",
                            "--out", str(tmp_path / "x")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "needs onnxscript" in lines[0] and "trackon2[export]" in lines[0]
    assert not (tmp_path / "x").exists(), "nothing is written when the export cannot run"


def test_export_at_another_size_than_the_checkpoint(tiny_weights, tmp_path):
    done = run_export("--checkpoint", str(tiny_weights), "--config", "config/tiny.yaml", "--num_queries", "4",
                      "--height", "128", "--out", str(tmp_path / "x"))
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert "takes 64x96 inputs only" in line and "--height 64 --width 96" in line


def test_export_with_a_checkpoint_of_another_config(tiny_weights, tmp_path):
    config = (ROOT / "config" / "tiny.yaml").read_text().replace("K: 4", "K: 8").replace("D: 64", "D: 96")
    (tmp_path / "other.yaml").write_text(config)
    done = run_export("--checkpoint", str(tiny_weights), "--config", str(tmp_path / "other.yaml"), "--num_queries",
                      "4", "--out", str(tmp_path / "x"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match the model built from this config" in lines[0]


def test_runtime_given_graphs_of_another_version(tiny_export, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_export, old)
    spec = json.loads((old / MANIFEST_NAME).read_text())
    (old / MANIFEST_NAME).write_text(json.dumps({**spec, "format_version": 0}))
    with pytest.raises(ExportFormatError, match="format version 0, but this runtime reads version 1"):
        OnnxTracker(old)
    (old / MANIFEST_NAME).write_text(json.dumps(spec))
    graph = onnx.load(str(old / STEP_GRAPH_NAME))
    for entry in graph.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = "0"
    onnx.save(graph, str(old / STEP_GRAPH_NAME))
    with pytest.raises(ExportFormatError, match="the graph is of export format version 0"):
        OnnxTracker(old)
    with pytest.raises(ExportFormatError, match="holds no trackon2_onnx.json"):
        OnnxTracker(tmp_path)


def test_runtime_rejects_frames_of_the_wrong_size(tiny_export):
    tracker = OnnxTracker(tiny_export, threads=1)
    with pytest.raises(StreamInputError, match=r"must be an \(H, W, 3\) RGB image, got shape \(70, 100, 4\)"):
        tracker.track_frame(np.zeros((70, 100, 4), np.uint8))
    tracker.track_frame(np.zeros((70, 100, 3), np.uint8))
    with pytest.raises(StreamInputError, match=r"frame size changed within a stream: \(80, 100\) vs \(70, 100\)"):
        tracker.track_frame(np.zeros((80, 100, 3), np.uint8))
    with pytest.raises(StreamInputError, match="lie outside the 100x70 frame"):
        tracker.add_queries([[150.0, 10.0]])
    with pytest.raises(StreamInputError, match=f"at most {NUM_QUERIES} user queries"):
        tracker.add_queries(np.ones((NUM_QUERIES + 1, 2)))


# --------------------------------------------------------------------------------------------- front ends
def test_demo_runs_on_the_exported_graph(tiny_export, tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "demo.py", "--video", "media/sample.mp4", "--backend", "onnx", "--onnx_dir",
                           str(tiny_export), "--grid_size", "3", "--support_grid_size", str(SUPPORT),
                           "--max_frames", "12", "--output_dir", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = np.load(out / "tracks.npz")
    assert result["tracks"].shape == (12, 9, 2) and result["visibility"][0].all()  # pinned on the query frame
    assert np.abs(np.diff(result["tracks"], axis=0)).max() > 0  # the points were tracked, not left in place


def test_live_tab_session_tracks_with_the_exported_graph(tiny_export):
    pytest.importorskip("gradio")
    from trackon2.export.torch_facade import OnnxPredictor
    from trackon2.webapp.live import LiveSession

    shared = OnnxPredictor.from_folder(tiny_export, support_grid_size=SUPPORT, threads=1)
    first, second = LiveSession(shared), LiveSession(shared)
    frames = random_stream(4, 70, 100)
    first.process(frames[0])
    first.add_point(30.0, 20.0)
    second.process(frames[0])
    for frame in frames[1:]:
        first.process(frame)
    assert first.point_count == 1 and second.point_count == 0  # each session has its own stream
    tracks = first.tracks.as_arrays()
    assert tracks["tracks"].shape == (4, 1, 2) and tracks["visibility"][1]  # pinned on its start frame
    first.clear()
    assert first.point_count == 0
