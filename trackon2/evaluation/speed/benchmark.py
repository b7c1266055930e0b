"""Speed and memory of Track-On2 for N_sqrt^2 grid queries and inference memory M_i, as the reference's benchmark.

    python -m evaluation.benchmark --config_path config/test.yaml [--model_checkpoint_path ckpt.pth] \
        [--davis_path tapvid_davis.pkl] --N_sqrt 8 --memory_size 24 [--batch 1 4 8] [--stages] [--full_memory]
    python -m evaluation.benchmark --checkpoint trackon2-dinov2 --N_sqrt 8

Queries are an N_sqrt x N_sqrt grid on frame 0, plus ``--support_grid`` support queries (default none). Without
``--davis_path`` the clips are random videos of ``--num_frames`` frames at ``--height`` x ``--width`` (DAVIS in
TAP-Vid format is 256x256). Each ``--batch`` size B is measured in turn, tracking B streams per step (a DAVIS
video is repeated B times); frames/s counts the frames of all B streams. The first ``--warmup`` clips are not
counted. Model-only time is the predictor call (CUDA events on GPU); end-to-end time also includes moving the
clip to the device, building the queries and bringing the outputs back to the host. ``--stages`` adds the mean
milliseconds per step of each stage (the profiler ranges the model marks, ``model.stages``; the profiler costs a
little, so leave it off for frames/s). ``--full_memory`` starts every stream with a full memory (steady state) instead of
an empty one. ``--amp`` runs the model under bfloat16 autocast. ``--two_way`` also times tracking in both directions
against forward only on a random clip whose queries all start on its middle frame (``evaluation.speed.two_way_cost``). Peak memory is torch.cuda.max_memory_allocated on
CUDA and the process's peak resident set on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from trackon2.dataset.errors import DatasetFormatError
from trackon2.evaluation.datasets import EvalDataset, build_dataset
from trackon2.evaluation.device import parse_device
from trackon2.evaluation.speed import peak_memory as memory
from trackon2.evaluation.speed.stage_timing import StageTimer
from trackon2.evaluation.speed.steady_state import fill_memory_at_start
from trackon2.evaluation.speed.two_way_cost import measure_two_way_cost, middle_frame_queries
from trackon2.evaluation.speed.two_way_cost import report_lines as two_way_lines
from trackon2.model.registry import is_variant_name
from trackon2.model.yaml_schema import ConfigError, load_config
from trackon2.runtime.memory_size import inference_memory_size
from trackon2.runtime.predictor import Predictor, get_points_on_a_grid
from trackon2.utils.model_options import CHECKPOINT_HELP, DEFAULT_CONFIG, load_model_options

SEED = 1234


@dataclass(frozen=True)
class BenchmarkResult:
    """Throughput over the timed clips and the peak memory of the whole run."""

    num_queries: int
    memory_size: int
    batch: int
    device: str
    timed_clips: int
    timed_frames: int
    model_fps: float
    end_to_end_fps: float
    peak_memory_bytes: int
    peak_memory_kind: str
    amp: bool = False
    stage_ms_per_step: dict[str, float] | None = None


def grid_queries(grid_size: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, S^2, 3) queries (t=0, x, y) on the predictor's S x S grid (margin W/64)."""
    points = get_points_on_a_grid(grid_size, (height, width), device)
    return torch.cat([torch.zeros_like(points[..., :1]), points], dim=-1)


def random_clips(count: int, num_frames: int, height: int, width: int, seed: int,
                 batch: int = 1) -> Iterator[torch.Tensor]:
    """``count`` random (batch, T, 3, H, W) float videos in [0, 255]."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.randint(0, 256, (batch, num_frames, 3, height, width), generator=generator).float()


def dataset_clips(dataset: EvalDataset, count: int) -> Iterator[torch.Tensor]:
    """The first ``count`` videos of an evaluation dataset as (1, T, 3, H, W) float in [0, 255]."""
    for index in range(min(count, len(dataset))):
        yield dataset.sample(index).video[None]


def _timer(device: torch.device):
    """(start, stop) callables measuring milliseconds, with CUDA events on GPU and perf_counter on CPU."""
    if device.type == "cuda":
        start_event = torch.cuda.Event(enable_timing=True)
        end_event = torch.cuda.Event(enable_timing=True)

        def stop() -> float:
            end_event.record()
            torch.cuda.synchronize(device)
            return start_event.elapsed_time(end_event)

        return start_event.record, stop
    began = [0.0]

    def start() -> None:
        began[0] = time.perf_counter()

    def stop_cpu() -> float:
        return (time.perf_counter() - began[0]) * 1000.0

    return start, stop_cpu


def benchmark(
    predictor: torch.nn.Module,
    clips: Iterator[torch.Tensor],
    grid_size: int,
    memory_size: int,
    device: torch.device,
    warmup: int = 2,
    stages: bool = False,
    amp: bool = False,
) -> BenchmarkResult:
    """Time ``predictor`` on every clip (the first ``warmup`` ones uncounted) and record the peak memory.

    Clips are (B, T, 3, H, W): B streams tracked together; frames/s counts B * T frames per clip. With
    ``stages`` the timed clips also report milliseconds per step for each stage the model marks (``model.stages``);
    with ``amp`` the model runs under bfloat16 autocast.
    """
    frames = steps = 0
    batch = 1
    timer = StageTimer(device) if stages else None
    model_ms = e2e_ms = 0.0
    timed = 0
    peak_kind = "cuda_max_memory_allocated" if device.type == "cuda" else "process_peak_rss"
    if not memory.reset_peak(device):
        peak_kind = "process_peak_rss_since_start"
    start_model, stop_model = _timer(device)
    for index, clip in enumerate(clips):
        began = time.perf_counter()
        if timer is not None and index == warmup:
            timer.start()
        video = clip.to(device, non_blocking=True)
        batch, num_frames, _, height, width = video.shape
        queries = grid_queries(grid_size, height, width, device).expand(batch, -1, -1)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            start_model()
            trajectory, visibility = predictor(video, queries)
            iteration_model_ms = stop_model()
            trajectory, visibility = trajectory.cpu(), visibility.cpu()
        iteration_e2e_ms = (time.perf_counter() - began) * 1000.0
        if index >= warmup:
            timed += 1
            steps += num_frames
            frames += batch * num_frames
            model_ms += iteration_model_ms
            e2e_ms += iteration_e2e_ms
    if timer is not None:
        timer.stop()
    return BenchmarkResult(
        num_queries=grid_size**2,
        memory_size=memory_size,
        batch=batch,
        device=str(device),
        timed_clips=timed,
        timed_frames=frames,
        model_fps=frames / (model_ms / 1000.0) if model_ms > 0 else float("nan"),
        end_to_end_fps=frames / (e2e_ms / 1000.0) if e2e_ms > 0 else float("nan"),
        peak_memory_bytes=memory.peak_bytes(device),
        peak_memory_kind=peak_kind,
        amp=amp,
        stage_ms_per_step=timer.per_frame_ms(steps) if timer is not None else None,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark script for Track-On2")
    parser.add_argument("--config_path", default=None,
                        help=f"model config YAML (default: the named variant's configuration, else {DEFAULT_CONFIG})")
    parser.add_argument("--checkpoint", "--model_checkpoint_path", dest="model_checkpoint_path", default=None,
                        help=f"{CHECKPOINT_HELP} (default: random weights)")
    parser.add_argument("--davis_path", default=None, help="TAP-Vid DAVIS pickle (default: random clips)")
    parser.add_argument("--N_sqrt", type=int, default=8, help="queries form an N_sqrt x N_sqrt grid")
    parser.add_argument("--memory_size", type=int, default=None,
                        help="inference memory size M_i (default: the reference benchmark's, DAVIS's 24)")
    parser.add_argument("--support_grid", type=int, default=0, help="support grid size S (S^2 extra queries)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="streams tracked per step, each measured")
    parser.add_argument("--stages", action="store_true", help="also report milliseconds per stage")
    parser.add_argument("--full_memory", action="store_true", help="start every stream with a full memory")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--num_clips", type=int, default=16, help="clips to run, warm-up included")
    parser.add_argument("--warmup", type=int, default=2, help="leading clips left out of the timing")
    parser.add_argument("--num_frames", type=int, default=48, help="frames per random clip")
    parser.add_argument("--height", type=int, default=256, help="random clip height")
    parser.add_argument("--width", type=int, default=256, help="random clip width")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--two_way", action="store_true",
                        help="also report the cost of tracking in both directions (queries on the middle frame)")
    parser.add_argument("--output_json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    for flag in ("config_path", "model_checkpoint_path", "davis_path"):
        value = getattr(args, flag)
        if value is not None and not Path(value).is_file() and not (flag == "model_checkpoint_path"
                                                                    and is_variant_name(value)):
            parser.error(f"--{flag}: file not found: {value}")
    if args.N_sqrt < 1 or (args.memory_size or 1) < 1 or min(args.num_frames, args.height, args.width) < 1:
        parser.error("--N_sqrt, --memory_size, --num_frames, --height and --width must be positive")
    args.memory_size = inference_memory_size(None, benchmark="davis", override=args.memory_size)
    if args.support_grid < 0 or min(args.batch) < 1:
        parser.error("--support_grid must be >= 0 and every --batch positive")
    if not 0 <= args.warmup < args.num_clips:
        parser.error("--warmup must be non-negative and smaller than --num_clips")
    try:
        args.device = parse_device(args.device)
    except ValueError as exc:
        parser.error(f"--device: {exc}")
    return args


def report_lines(result: BenchmarkResult) -> list[str]:
    """The reference's three result lines plus what was measured."""
    gib = result.peak_memory_bytes / 1024**3
    where = "GPU memory" if result.peak_memory_kind.startswith("cuda") else "process RSS"
    lines = [
        f"[Setup] {result.num_queries} queries, memory size {result.memory_size}, batch {result.batch}, "
        f"{result.device}{', bf16 autocast' if result.amp else ''}, "
        f"{result.timed_clips} timed clips / {result.timed_frames} frames",
        f"[Speed] Model-only FPS: {result.model_fps:.2f} frames/s",
        f"[Speed] End-to-end FPS: {result.end_to_end_fps:.2f} frames/s (includes H2D + postproc)",
        f"[Memory] Peak {where}: {gib:.2f} GB",
    ]
    if result.stage_ms_per_step is not None:
        lines.append("[Stages] ms per step: " + ", ".join(
            f"{stage} {ms:.1f}" for stage, ms in result.stage_ms_per_step.items()))
    return lines


def build_predictor(args: argparse.Namespace, device: torch.device) -> Predictor:
    """The predictor with ``--support_grid``, inference memory ``--memory_size``; bad input raises ValueError."""
    try:
        if args.model_checkpoint_path is None:
            model_args, checkpoint = load_config(args.config_path or DEFAULT_CONFIG), None
        else:
            model_args, checkpoint = load_model_options(args.model_checkpoint_path, args.config_path)
        model_args.M_i = args.memory_size
        predictor = Predictor(model_args, checkpoint_path=checkpoint, support_grid_size=args.support_grid,
                              pin_query_points=False)
    except (ConfigError, RuntimeError) as exc:  # checkpoint and backbone loading errors are RuntimeErrors
        raise ValueError(f"cannot build the predictor: {exc}") from exc
    return predictor.to(device).eval()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device
    torch.manual_seed(SEED)
    print("=== Benchmarking Track-On2 ===")
    print(f"Memory size: {args.memory_size}, N: {args.N_sqrt**2}", flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("high")
    try:
        predictor = build_predictor(args, device)
        dataset = build_dataset("davis", args.davis_path) if args.davis_path else None
    except (ValueError, DatasetFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.full_memory:
        fill_memory_at_start(predictor)
    results = []
    for batch in args.batch:
        if dataset is not None:
            clips = (clip.expand(batch, -1, -1, -1, -1) for clip in dataset_clips(dataset, args.num_clips))
        else:
            clips = random_clips(args.num_clips, args.num_frames, args.height, args.width, SEED, batch)
        try:
            result = benchmark(predictor, clips, args.N_sqrt, args.memory_size, device, warmup=args.warmup,
                               stages=args.stages, amp=args.amp)
        except DatasetFormatError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("\n".join(report_lines(result)), flush=True)
        results.append(asdict(result))
    payload: dict[str, object] = {"results": results}
    if args.two_way:
        clip = next(random_clips(1, args.num_frames, args.height, args.width, SEED)).to(device)
        queries = middle_frame_queries(args.N_sqrt, args.num_frames, args.height, args.width).to(device)
        cost = measure_two_way_cost(predictor, clip, queries)
        print("\n".join(two_way_lines(cost)), flush=True)
        payload["two_way"] = cost.to_dict()
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
