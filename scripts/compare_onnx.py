"""The exported step against this project's PyTorch path: exactness stream for stream, and speed side by side.

    .venv/bin/python -c "import torch, yaml; from runtime.predictor import Predictor; torch.manual_seed(0); \\
        Predictor(yaml.safe_load(open('config/bench_dinov2_s.yaml'))).save('bench/weights.pt')"
    .venv/bin/python -m export.onnx --checkpoint bench/weights.pt --config config/bench_dinov2_s.yaml \\
        --num_queries 256 --memory_size 72 --out bench/onnx
    .venv/bin/python scripts/compare_onnx.py --export bench/onnx --checkpoint bench/weights.pt exactness
    .venv/bin/python scripts/compare_onnx.py --export bench/onnx --checkpoint bench/weights.pt speed --stages

``exactness`` streams a random video through the Predictor (fast and plain forms) and the ONNX runtime with
queries added on several frames and some removed (``export.compare``) and prints the largest point difference
and the visibility decisions that differ (``--backends openvino``: with OpenVINO running the graph). ``speed``
tracks, in alternating rounds on one thread, ``--queries`` user queries plus the support grid with every memory
slot full, with the Predictor (its fast path, the project's PyTorch default), ONNX Runtime and OpenVINO (the same
graph), and reports frames/s and, with ``--stages``, milliseconds per stage of one frame for PyTorch (its profiler
ranges) and ONNX Runtime (its node profile, each node counted to the model part it was traced from).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from trackon2.evaluation.speed.stage_timing import StageTimer  # noqa: E402
from trackon2.evaluation.speed.steady_state import seeded_memory  # noqa: E402
from trackon2.export.compare import compare_streams, random_stream  # noqa: E402
from trackon2.export.runtime import OnnxTracker  # noqa: E402
from trackon2.runtime.predictor import Predictor  # noqa: E402

# Which stage of ``model.stages`` a graph node belongs to, by the first model part it was traced in.
PART_STAGES = {"model.backbone": "vit_adapter_fpn", "model.fpn": "vit_adapter_fpn",
               "model.memory_attention": "memory_attention", "model.reranking_head": "reranking",
               "model.ms_corr_proj": "multiscale_correlation"}
FUNCTION_STAGES = {"correlation": "multiscale_correlation", "attend_memory": "memory_attention",
                   "resize_frames": "vit_adapter_fpn", "encode": "vit_adapter_fpn"}


def build_predictor(args: argparse.Namespace, fast: bool) -> Predictor:
    config = {**yaml.safe_load(Path(args.config).read_text()), "M_i": args.memory_size}
    return Predictor(config, checkpoint_path=args.checkpoint, support_grid_size=args.support_grid, fast=fast,
                     pin_query_points=True)


class OpenVinoStep:
    """The step graph compiled by OpenVINO for the CPU (float32, one thread), with ``OrtSession``'s methods."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
        self.request = self.compiled.create_infer_request()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {output.get_any_name(): np.array(results[output]) for output in self.compiled.outputs}


def exactness(args: argparse.Namespace) -> None:
    export = Path(args.export)
    video = random_stream(args.frames, *args.frame_size)
    for fast, backend in ((form == "fast", backend) for form in args.forms for backend in args.backends):
        tracker = OnnxTracker(export, threads=1)
        if backend == "openvino":
            tracker.session = OpenVinoStep(export / tracker.manifest["graphs"]["step"], threads=1)
        difference = compare_streams(build_predictor(args, fast), tracker, video)
        print(json.dumps({"predictor": "fast" if fast else "plain", "backend": backend, "frames": difference.frames,
                          "ids_equal": difference.ids_equal, "max_point_px": difference.max_point_px,
                          "max_confidence": difference.max_confidence, "visibility_flips": difference.flips,
                          "flips_not_at_delta_v": difference.far_flips}), flush=True)


def timed_stream(step, add, fill, frames: np.ndarray, warmup: int) -> float:
    """Frames/s over ``frames[warmup:]``: queries added and the memory filled on the first frame."""
    add()
    step(frames[0])
    fill()
    for frame in frames[1:warmup]:
        step(frame)
    began = time.perf_counter()
    for frame in frames[warmup:]:
        step(frame)
    return (len(frames) - warmup) / (time.perf_counter() - began)


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    export = Path(args.export)
    height, width = yaml.safe_load(Path(args.config).read_text())["input_size"]
    frames = random_stream(args.warmup + args.frames, height, width)
    points = (np.random.default_rng(3).random((args.queries, 2)) * [width - 1, height - 1]).astype(np.float32)
    predictor = build_predictor(args, fast=True)
    predictor.memory_filler = seeded_memory()
    runners = {"pytorch": lambda: timed_stream(lambda f: predictor.track_frame(f), lambda: (
        predictor.reset(), predictor.add_queries(torch.from_numpy(points))), lambda: None, frames, args.warmup)}
    memory = None
    for name in ("onnxruntime", "openvino"):
        tracker = OnnxTracker(export, threads=1, support_grid_size=args.support_grid)
        if name == "openvino":
            tracker.session = OpenVinoStep(export / tracker.manifest["graphs"]["step"], threads=1)
        slots = args.queries + args.support_grid ** 2
        memory = memory if memory is not None else np.random.default_rng(2).standard_normal(
            (slots, tracker.memory_size, tracker.dim)).astype(np.float32)
        runners[name] = (lambda tracker: lambda: timed_stream(
            tracker.track_frame, lambda: (tracker.reset(), tracker.add_queries(points)),
            lambda: tracker.fill_memory(memory), frames, args.warmup))(tracker)
    rates: dict[str, list[float]] = defaultdict(list)
    for round_index in range(args.rounds):
        for name, run in runners.items():
            rates[name].append(run())
            print(f"round {round_index + 1} {name}: {rates[name][-1]:.3f} frames/s", flush=True)
    summary = {name: {"median_fps": statistics.median(values), "fps": values} for name, values in rates.items()}
    print(json.dumps(summary))
    if args.stages:
        print(json.dumps({"pytorch_ms": torch_stages(predictor, frames, points),
                          "onnxruntime_ms": ort_stages(export, frames, points, memory, args)}))


def torch_stages(predictor: Predictor, frames: np.ndarray, points: np.ndarray) -> dict[str, float]:
    predictor.reset()
    predictor.add_queries(torch.from_numpy(points))
    predictor.track_frame(frames[0])
    with StageTimer(torch.device("cpu")) as timer:
        predictor.track_frame(frames[1])
    return {stage: round(ms, 1) for stage, ms in timer.per_frame_ms(1).items()}


def node_stages(graph_path: Path) -> dict[str, str]:
    """Each graph node's stage, from the module scopes and stack traces the exporter records."""
    import onnx

    stages = {}
    for node in onnx.load(str(graph_path), load_external_data=False).graph.node:
        meta = {entry.key: entry.value for entry in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))  # a list written by the exporter
        part = next((stage for scope in scopes for prefix, stage in PART_STAGES.items()
                     if scope == prefix or scope.startswith(prefix + ".")), None)
        if part is None:
            trace = meta.get("pkg.torch.onnx.stack_trace", "")
            functions = [line.split(" in ")[-1] for line in trace.splitlines() if " in " in line]
            part = next((FUNCTION_STAGES[f] for f in reversed(functions) if f in FUNCTION_STAGES),
                        "feature_query_attention_head" if any(s.startswith("model.") for s in scopes) else "other")
        stages[node.name] = part
    return stages


def traced_node_name(name: str) -> str:
    """The exported node an ONNX Runtime kernel comes from: its fusions append "/Fusion/" parts, its NCHWc
    convolutions drop the "node_" prefix and append "_nchwc"; nodes it fused from several (layer norms with
    their residual add) keep no name and count as "other"."""
    name = name.split("/")[0]
    return f"node_{name[:-len('_nchwc')]}" if name.endswith("_nchwc") else name


def ort_stages(export: Path, frames: np.ndarray, points: np.ndarray, memory: np.ndarray,
               args: argparse.Namespace) -> dict[str, float]:
    import onnxruntime as ort

    tracker = OnnxTracker(export, threads=1, support_grid_size=args.support_grid)
    graph = export / tracker.manifest["graphs"]["step"]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    tracker.session.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    tracker.add_queries(points)
    tracker.track_frame(frames[0])
    tracker.fill_memory(memory)
    tracker.track_frame(frames[1])
    profile = json.loads(Path(tracker.session.session.end_profiling()).read_text())
    stages = node_stages(graph)
    runs = [event for event in profile if event.get("name") == "model_run"]
    last_run_start = runs[-1]["ts"]
    totals: dict[str, float] = defaultdict(float)
    for event in profile:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time") and event["ts"] >= last_run_start:
            node = traced_node_name(name[:-len("_kernel_time")])
            totals[stages.get(node, "other")] += event["dur"] / 1000.0
    return {stage: round(ms, 1) for stage, ms in sorted(totals.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="the folder written by python -m export.onnx")
    parser.add_argument("--checkpoint", required=True, help="the weights it was exported from")
    parser.add_argument("--config", default="config/bench_dinov2_s.yaml")
    parser.add_argument("--memory_size", type=int, default=72)
    parser.add_argument("--support_grid", type=int, default=20)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("exactness")
    check.add_argument("--frames", type=int, default=24)
    check.add_argument("--forms", nargs="+", choices=("fast", "plain"), default=["fast", "plain"],
                       help="the Predictor's forms to compare with")
    check.add_argument("--backends", nargs="+", choices=("onnxruntime", "openvino"), default=["onnxruntime"],
                       help="what runs the graph")
    check.add_argument("--frame_size", type=int, nargs=2, default=(288, 384), metavar=("HEIGHT", "WIDTH"))
    timing = sub.add_parser("speed")
    timing.add_argument("--queries", type=int, default=256)
    timing.add_argument("--rounds", type=int, default=3)
    timing.add_argument("--warmup", type=int, default=2)
    timing.add_argument("--frames", type=int, default=4)
    timing.add_argument("--stages", action="store_true")
    args = parser.parse_args()
    exactness(args) if args.command == "exactness" else speed(args)


if __name__ == "__main__":
    main()
