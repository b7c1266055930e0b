"""Side-by-side speed and output comparison of two checkouts of this repository (issue 10).

    .venv/bin/python scripts/compare_speed.py --baseline /work/baseline --candidate . --rounds 3

Each round runs the baseline and the candidate in turn, each in its own process with PYTHONPATH pointing at its
checkout and one CPU thread, on the same random weights (``config/bench_dinov2_s.yaml``: DINOv2-S dimensions
built from ``backbone_config``, written once to ``--weights``), the same random 384x512 clip, ``--queries`` random user queries plus the 20x20
support grid, inference memory ``--memory_size``. A process tracks ``--warmup`` frames untimed, then the timed
clip of ``--frames`` frames; with ``--stages`` it also reports milliseconds per stage (hooks from this
checkout's ``evaluation/stage_timing.py``, attached to either model). The report gives each round's frames/s,
the median ratio of wall-clock frames/s and of frames per CPU second (process time: less sensitive to other
processes sharing the cores), the largest trajectory difference and the number of visibility flips.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_CONFIG = HERE.parent / "config" / "bench_dinov2_s.yaml"


def _own_module(name: str):
    """evaluation/<name>.py of this checkout, loaded by path so that it also serves the baseline's model."""
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "evaluation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_worker(args: argparse.Namespace) -> None:
    """Build the predictor of the checkout on PYTHONPATH, track the clip and save timings and outputs."""
    import torch

    from model.trackon_predictor import Predictor

    torch.set_num_threads(1)
    import yaml

    model_config = yaml.safe_load(BENCH_CONFIG.read_text())
    config = {**model_config, "M_i": args.memory_size}
    weights = Path(args.weights)
    if not weights.is_file():
        torch.manual_seed(0)
        untrained = Predictor({**config, "M_i": model_config["M"]}, support_grid_size=0)
        torch.save(untrained.model.state_dict(), weights)
    predictor = Predictor(config, checkpoint_path=weights)
    if args.full_memory:
        _own_module("steady_state").fill_memory_at_start(predictor)
    generator = torch.Generator().manual_seed(1)
    height, width = model_config["input_size"]
    total = args.warmup + args.frames
    video = torch.randint(0, 256, (1, total, 3, height, width), generator=generator).float()
    xy = torch.rand(1, args.queries, 2, generator=generator) * torch.tensor([width - 1.0, height - 1.0])
    queries = torch.cat([torch.zeros(1, args.queries, 1), xy], dim=-1)
    warm_video, timed_video = video[:, :args.warmup], video[:, args.warmup:]
    if args.warmup:
        predictor(warm_video, queries)
    timer = _own_module("stage_timing").StageTimer(predictor.model, torch.device("cpu")).attach() if args.stages else None
    began, began_cpu = time.perf_counter(), time.process_time()
    trajectory, visibility = predictor(timed_video, queries)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    stages = timer.per_frame_ms(args.frames) if timer else {}
    torch.save({"trajectory": trajectory, "visibility": visibility}, args.out + ".pt")
    Path(args.out).write_text(json.dumps({"fps": args.frames / seconds, "cpu_fps": args.frames / cpu_seconds,
                                          "stages_ms": stages}))


def _run_one(checkout: Path, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--weights", args.weights,
               "--frames", str(args.frames), "--warmup", str(args.warmup), "--queries", str(args.queries),
               "--memory_size", str(args.memory_size), "--out", str(out)]
    command += [flag for flag, on in (("--stages", args.stages), ("--full_memory", args.full_memory)) if on]
    subprocess.run(command, env=env, cwd=checkout, check=True)
    return json.loads(out.read_text())


def compare(args: argparse.Namespace) -> dict:
    """Alternate baseline and candidate for ``--rounds`` rounds; return the per-round numbers and the summary."""
    import torch

    work = Path(tempfile.mkdtemp(prefix="compare_speed_"))
    args.weights = args.weights or str(work / "weights.pt")
    rounds = []
    for index in range(args.rounds):
        row = {}
        for name, checkout in (("baseline", args.baseline), ("candidate", args.candidate)):
            row[name] = _run_one(Path(checkout).resolve(), args, work / f"{name}_{index}.json")
        row["ratio"] = row["candidate"]["fps"] / row["baseline"]["fps"]
        row["cpu_ratio"] = row["candidate"]["cpu_fps"] / row["baseline"]["cpu_fps"]
        print(f"round {index + 1}: baseline {row['baseline']['fps']:.3f} fps, candidate "
              f"{row['candidate']['fps']:.3f} fps, ratio {row['ratio']:.2f} (CPU-time ratio {row['cpu_ratio']:.2f})",
              flush=True)
        rounds.append(row)
    base = torch.load(work / "baseline_0.json.pt")
    cand = torch.load(work / "candidate_0.json.pt")
    max_px = (base["trajectory"].double() - cand["trajectory"].double()).abs().max().item()
    flips = int((base["visibility"] != cand["visibility"]).sum())
    summary = {"median_ratio": statistics.median(r["ratio"] for r in rounds),
               "median_cpu_time_ratio": statistics.median(r["cpu_ratio"] for r in rounds), "rounds": len(rounds),
               "max_trajectory_diff_px": max_px, "visibility_flips": flips,
               "visibility_entries": base["visibility"].numel()}
    print(json.dumps(summary, indent=2))
    return {"rounds": rounds, "summary": summary}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="/work/baseline", help="checkout measured as the reference")
    parser.add_argument("--candidate", default=str(HERE.parent), help="checkout measured against it")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/candidate rounds")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames per run")
    parser.add_argument("--queries", type=int, default=256, help="random user queries (plus the 20x20 grid)")
    parser.add_argument("--memory_size", type=int, default=72, help="inference memory M_i")
    parser.add_argument("--stages", action="store_true", help="also time the stages")
    parser.add_argument("--full_memory", action="store_true",
                        help="start with every memory slot filled (steady state) instead of an empty memory")
    parser.add_argument("--weights", default=None, help="shared weights file (created if missing)")
    parser.add_argument("--output_json", default=None, help="write rounds and summary here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.rounds, args.frames, args.queries, args.memory_size) < 1 or args.warmup < 0:
        parser.error("--rounds, --frames, --queries and --memory_size must be positive, --warmup >= 0")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    result = compare(args)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
